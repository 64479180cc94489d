"""Run one call in the foreground, in its task's environment: what ``hog-batch debug`` puts in the task
instead of the runner. Standard library only; Python 3.8+.

It uses the runner's own pieces (importing the script, finding the function,
reading the payload, encoding the result), which the host puts in
``RUNNER_SOURCE``. Nothing is captured: the call prints to the terminal.
Its record goes to the file ``HOG_BATCH_DEBUG_RESULT``; with
``HOG_BATCH_DEBUG_PDB=1`` an exception opens the debugger where it was raised.
"""

import json
import os
import sys
import time
import traceback
import types

RUNNER_SOURCE = None  # the runner's text, filled in by the host


def _runner():
    module = types.ModuleType("hog_runner")
    exec(compile(RUNNER_SOURCE, "hog_runner.py", "exec"), module.__dict__)
    return module


def main(argv):
    runner = _runner()
    script_path, payload_path = argv[1], argv[2]
    header = runner.read_header(payload_path)
    call_index = header["calls"][0]
    record = {
        "call": call_index,
        "ok": False,
        "kind": None,
        "value": None,
        "error": None,
        "tb": None,
        "out": "",
        "err": "",
    }
    started = time.time()
    try:
        module = runner.import_script(script_path)
        function = runner.resolve(module, header["function"])
        arguments = runner.read_arguments(payload_path)
        kwargs = dict(arguments["kwargs"])
        kwargs.update(arguments["swept"][0])
        value = function(*arguments["args"], **kwargs)
        record["kind"], record["value"] = runner.encode_result(value, 0)
        record["ok"] = True
        try:
            record["repr"] = repr(value)[:10000]
        except Exception:
            record["repr"] = "<unprintable %s>" % type(value).__name__
    except BaseException as exc:
        record["error"] = runner.describe_error(exc)
        record["tb"] = traceback.format_exc()
        sys.stdout.flush()
        sys.stderr.write(record["tb"])
        sys.stderr.flush()
        if os.environ.get("HOG_BATCH_DEBUG_PDB") == "1" and not isinstance(exc, KeyboardInterrupt):
            import pdb

            pdb.post_mortem(exc.__traceback__)
    record["t0"], record["t1"] = started, time.time()
    sys.stdout.flush()
    with open(os.environ["HOG_BATCH_DEBUG_RESULT"], "w") as handle:
        json.dump(record, handle)
    return 0 if record["ok"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
