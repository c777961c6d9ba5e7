"""kafka-python (a pure-Python Kafka client) against a running `sluice serve`.

Usage: python3 kafka_python_roundtrip.py HOST:PORT
Produces keyed records (acks=all; kafka-python 3 enables idempotence by default),
consumes them in a consumer group, commits, then checks that the group resumes after the
committed offsets. Exits non-zero with a message on any mismatch.
"""
import sys
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic

bootstrap = sys.argv[1]
topic = sys.argv[2] if len(sys.argv) > 2 else "py-roundtrip"

admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="py-admin")
admin.create_topics([NewTopic(name=topic, num_partitions=3, replication_factor=1)])
assert topic in admin.list_topics(), "topic missing after create"

producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
futures = [producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode()) for i in range(300)]
producer.flush()
metas = [f.get(timeout=30) for f in futures]
by_partition = {}
for m in metas:
    by_partition.setdefault(m.partition, []).append(m.offset)
for p, offs in by_partition.items():
    assert sorted(offs) == list(range(len(offs))), f"partition {p}: offsets not dense"


def consume(expect, group):
    c = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=1000,
    )
    got = {}
    deadline = time.time() + 60
    while len(got) < expect and time.time() < deadline:
        for msg in c:
            got[msg.key.decode()] = msg.value.decode()
    c.commit()
    c.close()
    return got


got = consume(300, "py-group")
assert len(got) == 300, f"first read got {len(got)} records"
assert all(got[f"k{i}"] == f"v{i}" for i in range(300))

for i in range(300, 320):
    producer.send(topic, key=f"k{i}".encode(), value=f"v{i}".encode())
producer.flush()
producer.close()

got = consume(20, "py-group")
assert sorted(got) == sorted(f"k{i}" for i in range(300, 320)), f"resume read {sorted(got)}"

groups = admin.list_groups()
assert "py-group" in str(groups), f"groups: {groups}"
described = str(admin.describe_groups(["py-group"]))
assert "py-group" in described, described
offsets = admin.list_group_offsets("py-group")
offsets = offsets.get("py-group", offsets)
total = sum(o.offset for tp, o in offsets.items() if tp.topic == topic)
assert total == 320, f"committed: {offsets}"
admin.close()
print("kafka-python round trip: OK (320 records, group resume, admin calls)")
