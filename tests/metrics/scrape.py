#!/usr/bin/env python3
"""Scrapes http://ADDRESS/metrics and parses the page with prometheus_client's own text
parser (what Prometheus' Python tooling uses), then prints one JSON object: each sample
as "name{label=value,...}" -> value, and each family's type. Fails (exit 1) on a page the
parser refuses."""
import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

page = urllib.request.urlopen("http://%s/metrics" % sys.argv[1], timeout=5).read().decode()
samples, types = {}, {}
for family in text_string_to_metric_families(page):
    types[family.name] = family.type
    for s in family.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        samples["%s{%s}" % (s.name, labels)] = s.value
print(json.dumps({"samples": samples, "types": types}))
