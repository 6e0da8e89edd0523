"""`videosafety` with one more model spec, `rule:first`: a labeller standing in for a served VLM
(no weights can be downloaded here) that answers from the prompt alone — the first policy
listed when the metadata hint narrowed the list, else "safe" (as tests/test_construct_build.py's
Rule). Everything else is the command line as shipped; the kill campaign runs `bench build`
through it so that stages label, queries, translate and pair have work to do.

    PYTHONPATH=src:benchmarks python -m faults.rule_labeller bench build ... --labeller rule:first
"""

from __future__ import annotations

import re
import sys

SPEC = "rule:first"


class RuleLabeller:
    name = SPEC
    revision = "rule-v1"
    reads_inputs = False
    cpu_bound = False

    def generate(self, inputs, settings):
        out = []
        for i in inputs:
            names = re.findall(r"^- (\w+):", i.query, flags=re.M)
            out.append(names[0] if len(names) < 19 else "safe")
        return out


def main() -> None:
    from faults import rule_labeller  # the imported module, not __main__: kill points wrap its class
    from videosafety.models import spec as model_spec

    real = model_spec.load_model

    def load_model(spec, *args, **kwargs):
        return rule_labeller.RuleLabeller() if spec == SPEC else real(spec, *args, **kwargs)

    model_spec.load_model = load_model  # label.py imports it at call time from the module
    from videosafety.cli import app

    app(args=sys.argv[1:], prog_name="videosafety")


if __name__ == "__main__":
    main()
