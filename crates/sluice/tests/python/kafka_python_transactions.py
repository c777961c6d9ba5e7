"""kafka-python's transactional producer against a running `sluice serve`.

Usage: python3 kafka_python_transactions.py HOST:PORT
Commits one transaction and aborts another (with offsets sent to the transaction), then
checks with read_committed and read_uncommitted consumers what each sees, and that only the
committed transaction's offsets reached the group. Exits non-zero with a message on any
mismatch.
"""
import sys

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.structs import OffsetAndMetadata

bootstrap = sys.argv[1]
topic = "py-txn"

admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="py-txn-admin")
admin.create_topics([
    NewTopic(name=topic, num_partitions=2, replication_factor=1),
    NewTopic(name="py-src", num_partitions=1, replication_factor=1),
])

producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="py-txn-1")
producer.init_transactions()

producer.begin_transaction()
for i in range(20):
    producer.send(topic, key=f"k{i}".encode(), value=f"committed-{i}".encode())
producer.send_offsets_to_transaction(
    {TopicPartition("py-src", 0): OffsetAndMetadata(11, "", -1)}, "py-txn-group"
)
producer.commit_transaction()

producer.begin_transaction()
for i in range(7):
    producer.send(topic, key=f"a{i}".encode(), value=f"aborted-{i}".encode())
producer.flush()
producer.send_offsets_to_transaction(
    {TopicPartition("py-src", 0): OffsetAndMetadata(99, "", -1)}, "py-txn-group"
)
producer.abort_transaction()
producer.close()


def read(isolation):
    c = KafkaConsumer(
        bootstrap_servers=bootstrap,
        isolation_level=isolation,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=3000,
    )
    c.assign([TopicPartition(topic, 0), TopicPartition(topic, 1)])
    c.seek_to_beginning()
    values = sorted(m.value.decode() for m in c)
    c.close()
    return values


committed = read("read_committed")
want = sorted(f"committed-{i}" for i in range(20))
assert committed == want, f"read_committed saw {committed}"
everything = read("read_uncommitted")
want_all = sorted(want + [f"aborted-{i}" for i in range(7)])
assert everything == want_all, f"read_uncommitted saw {everything}"

offsets = admin.list_group_offsets("py-txn-group")
got = offsets.get("py-txn-group", offsets).get(TopicPartition("py-src", 0))
assert got is not None and got.offset == 11, f"group offsets {offsets}"
print("kafka-python transactions ok: 20 committed, 7 aborted, offset 11")
