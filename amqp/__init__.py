"""warrenmq.amqp: the AMQP 0-9-1 wire layer (frames, codec, connection and channel state machines)."""
