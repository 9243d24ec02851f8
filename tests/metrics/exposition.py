"""Reading a Prometheus text exposition in tests: scrape, parse, look samples up."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

RECORDED_TYPES = {"unknown": "untyped"}  # the parser's name -> the TYPE line's


def scrape_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=30) as response:
        assert response.status == 200
        return response.read().decode("utf-8")


@dataclass
class Family:
    name: str  # as exposed: a counter's with its _total
    type: str  # as on the TYPE line: counter, gauge, histogram, untyped
    help: str
    label_sets: set[str]  # sorted label names joined by commas, "-" for none


class Exposition:
    """One scrape, parsed with prometheus_client's own parser."""

    def __init__(self, text: str) -> None:
        self.samples: dict[tuple[str, frozenset], float] = {}
        self.families: dict[str, Family] = {}
        for fam in text_string_to_metric_families(text):
            exposed = fam.name + "_total" if fam.type == "counter" else fam.name
            labels = set()
            for sample in fam.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
                names = sorted(k for k in sample.labels if k not in ("le", "quantile"))
                labels.add(",".join(names) or "-")
            self.families[exposed] = Family(
                exposed, RECORDED_TYPES.get(fam.type, fam.type), fam.documentation, labels
            )

    @classmethod
    def scrape(cls, url: str) -> Exposition:
        return cls(scrape_text(url))

    def value(self, name: str, **labels: str) -> float:
        """The sample's value; KeyError (naming what there is) when it is missing."""
        key = (name, frozenset(labels.items()))
        if key not in self.samples:
            near = sorted(str(dict(k[1])) for k in self.samples if k[0] == name)
            raise KeyError(f"no sample {name}{labels}; samples of that name: {near}")
        return self.samples[key]

    def labelled(self, name: str, label: str) -> dict[str, float]:
        """Every sample of name, keyed by the value of one label."""
        return {dict(k[1])[label]: v for k, v in self.samples.items() if k[0] == name}
