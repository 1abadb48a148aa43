"""A Confluent client in another language, used by the interop tests.

    confluent_client.py read    BOOTSTRAP REGISTRY TOPIC EVENT_ID
        Reads TOPIC from the beginning with confluent-kafka's AvroDeserializer (writer schema from the
        registry) until it finds EVENT_ID; prints the decoded record as JSON.
    confluent_client.py produce BOOTSTRAP REGISTRY TOPIC EVENT_ID TENANT FLOW SUBJECT_ID
        Produces a com.switchyard.kyc.VerifyIdentity command with confluent-kafka's AvroSerializer,
        using the subject's latest registered schema.
"""
import datetime
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.serialization import MessageField, SerializationContext

RECORD = "com.switchyard.kyc.VerifyIdentity"


def registry(url):
    # Bounded: a registry request that hangs fails the call (and the caller retries) instead of the test.
    return SchemaRegistryClient({"url": url, "timeout": 10})


def retried(call, attempts=3):
    for i in range(attempts):
        try:
            return call()
        except Exception as e:  # the registry client raises several kinds on timeouts
            if i == attempts - 1:
                raise
            print(f"retrying after: {e}", file=sys.stderr)
            time.sleep(1)


def read(bootstrap, registry_url, topic, event_id):
    sr = registry(registry_url)
    deserialize = AvroDeserializer(sr, return_record_name=True)
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "interop-" + uuid.uuid4().hex,
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    deadline = time.time() + 30
    try:
        while time.time() < deadline:
            msg = consumer.poll(1.0)
            if msg is None or msg.error():
                continue
            name, record = retried(lambda: deserialize(msg.value(), SerializationContext(topic, MessageField.VALUE)))
            if str(record["envelope"]["event_id"]) == event_id:
                print(json.dumps({"record": name, "value": record}, default=str))
                return 0
    finally:
        consumer.close()
    print("event not found", file=sys.stderr)
    return 1


def produce(bootstrap, registry_url, topic, event_id, tenant, flow, subject_id):
    sr = registry(registry_url)
    latest = retried(lambda: sr.get_latest_version(topic + "-value"))
    serialize = AvroSerializer(sr, latest.schema.schema_str,
                               conf={"auto.register.schemas": False, "use.latest.version": True})
    envelope = {
        "event_id": event_id,
        "event_type": RECORD,
        "occurred_at": datetime.datetime.now(datetime.timezone.utc),
        "tenant_id": tenant,
        "flow_id": flow,
        "correlation_id": flow,
        "causation_id": None,
        "idempotency_key": None,
        "producer": "python-interop",
    }
    command = {
        "envelope": envelope,
        "subject_id": subject_id,
        "person": {"given_name": "Katherine", "family_name": "Johnson", "date_of_birth": None,
                   "nationality": "US", "address": None, "email": None, "phone": None},
        "document_types": ["passport"],
    }
    value = retried(lambda: serialize((RECORD, command), SerializationContext(topic, MessageField.VALUE)))
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all"})
    producer.produce(topic, key=flow, value=value)
    if producer.flush(30) != 0:
        print("not delivered", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    mode, args = sys.argv[1], sys.argv[2:]
    sys.exit(read(*args) if mode == "read" else produce(*args))
