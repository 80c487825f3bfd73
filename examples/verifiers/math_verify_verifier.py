#!/usr/bin/env python3
"""HF math_verify as an rftx verifier (`rft.grader = "command"`).

    [rft]
    grader = "command"
    command = ["python3", "examples/verifiers/math_verify_verifier.py"]

rftx starts it once and writes one JSON request per line on its standard input,
{"completion": "...", "reference": "...", "row": {"index": 0, "id": null, "question": "..."}},
a batch at a time; it answers each with one line, in order,
{"correct": true, "parsed": "[72, '72']"}: math_verify's verdict,
verify(parse(reference), parse(completion)), and the string of the completion's parse. It stops
when its input closes. Needs `pip install math-verify==0.9.0`.
"""
import json
import sys

from math_verify import parse, verify


def answer(request):
    gold = parse(request["reference"])
    pred = parse(request["completion"])
    return {"correct": bool(verify(gold, pred)), "parsed": str(pred)}


def main():
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            response = answer(json.loads(line))
        except Exception as e:  # one bad request is a wrong answer, not a dead verifier
            response = {"correct": False, "reason": f"{type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(response) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
