"""Server replies that carry names a client chose, built without pamqp's name check.

pamqp checks queue and exchange names against the old AMQP 0-9-1 domain
(letters, digits, `-_.:`), but RabbitMQ accepts any UTF-8 name of up to
255 bytes, and so does the decoding of what clients send. These replies
echo such names back, so they must not be refused on the way out.
"""

from __future__ import annotations

from pamqp import commands


class DeclareOk(commands.Queue.DeclareOk):
    def validate(self) -> None:  # any name the declare itself was allowed
        pass


class GetOk(commands.Basic.GetOk):
    def validate(self) -> None:
        pass


class Return(commands.Basic.Return):
    def validate(self) -> None:
        pass
