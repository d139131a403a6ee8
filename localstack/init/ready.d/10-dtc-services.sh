#!/bin/sh
# LocalStack init hook (ready.d): runs inside the container once LocalStack is up. It fails the
# init stage, which `npm run localstack:deploy` checks before deploying, when a service the DTC
# app deploys to is not available in this image or plan, naming the services.
set -eu
python3 - <<'PY'
import json
import sys
import urllib.request

NEEDED = [
    "cloudformation", "iam", "sts", "s3", "ssm",            # cdk bootstrap and deploy
    "lambda", "dynamodb", "sqs", "stepfunctions", "apigateway",
    "events", "logs", "cloudwatch", "sns",
]
with urllib.request.urlopen("http://localhost:4566/_localstack/health", timeout=10) as res:
    health = json.load(res)
services = health.get("services", {})
missing = [s for s in NEEDED if services.get(s) not in ("available", "running")]
print(f"dtc: LocalStack {health.get('version', '?')} ({health.get('edition', '?')})")
if missing:
    print("dtc: not available here: " + ", ".join(missing), file=sys.stderr)
    sys.exit(1)
print("dtc: every service the app needs is available")
PY
