"""A TensorGuard TrainingService client in Python (grpcio), generated from the same .proto.

Generate the stubs (not committed), then run:

    python -m grpc_tools.protoc -I proto --python_out=OUT --grpc_python_out=OUT \
        proto/tensorguard/v1/common.proto proto/tensorguard/v1/training_service.proto
    PYTHONPATH=OUT python driver/examples/python/client.py \
        --address 127.0.0.1:50051 --key "$TENSORGUARD_API_KEY" --job job.json

It submits the job (idempotently, by a request id), follows its events to the end, resuming
after the last event id if the stream breaks, and prints the signed privacy report after
checking its Ed25519 signature when the `cryptography` package is available.
"""

import argparse
import json
import sys
import time
import uuid

import grpc
from google.protobuf import struct_pb2

from tensorguard.v1 import training_service_pb2 as pb
from tensorguard.v1 import training_service_pb2_grpc as pb_grpc


def follow(stub, metadata, job_id):
    """Yields the job's events once each, reconnecting after the last event id on UNAVAILABLE."""
    last = 0
    while True:
        try:
            for resp in stub.WatchJob(pb.WatchJobRequest(job_id=job_id, after_event_id=last), metadata=metadata):
                last = resp.event.event_id
                yield resp.event
            return
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.UNAVAILABLE:
                raise
            time.sleep(1.0)


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--address", required=True)
    ap.add_argument("--key", required=True, help="API key (sent as authorization: Bearer <key>)")
    ap.add_argument("--job", required=True, help="job document, JSON")
    ap.add_argument("--request-id", default=None, help="idempotency key (default: a new UUID)")
    ap.add_argument("--ca", default=None, help="PEM CA bundle: connect with TLS")
    args = ap.parse_args(argv)

    if args.ca:
        with open(args.ca, "rb") as f:
            channel = grpc.secure_channel(args.address, grpc.ssl_channel_credentials(root_certificates=f.read()))
    else:
        channel = grpc.insecure_channel(args.address)
    stub = pb_grpc.TrainingServiceStub(channel)
    metadata = [("authorization", f"Bearer {args.key}")]

    with open(args.job) as f:
        document = struct_pb2.Struct()
        document.update(json.load(f))
    resp = stub.SubmitJob(
        pb.SubmitJobRequest(request_id=args.request_id or str(uuid.uuid4()), spec=pb.JobSpec(document=document)),
        metadata=metadata,
        timeout=30,
    )
    job_id = resp.job.job_id
    print(json.dumps({"type": "submitted", "job_id": job_id, "created": resp.created}), flush=True)

    for ev in follow(stub, metadata, job_id):
        kind = ev.WhichOneof("kind")
        line = {"type": "event", "event_id": ev.event_id, "kind": kind}
        if kind == "state_changed":
            line["state"] = pb.JobState.Name(ev.state_changed.state)
        elif kind == "round_progress":
            line["round"] = ev.round_progress.round
            line["epsilon"] = ev.round_progress.privacy_spent.epsilon
        elif kind == "eval_metrics":
            line["accuracy"] = ev.eval_metrics.accuracy
        print(json.dumps(line), flush=True)

    report = stub.GetPrivacyReport(pb.GetPrivacyReportRequest(job_id=job_id), metadata=metadata, timeout=30).report
    verified = None
    try:
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        load_pem_public_key(report.public_key_pem.encode()).verify(report.signature, report.signed_payload)
        verified = True
    except ImportError:
        pass  # `cryptography` not installed: the signature is not checked here
    signed = json.loads(report.signed_payload)
    print(
        json.dumps(
            {
                "type": "privacy_report",
                "job_id": signed["job_id"],
                "epsilon": signed["epsilon"],
                "delta": signed["delta"],
                "key_id": report.key_id,
                "signature_verified": verified,
            }
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
