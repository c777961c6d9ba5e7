// KafkaJS (a pure-JavaScript Kafka client) against a running `sluice serve`.
//
// Usage: node kafkajs_roundtrip.mjs HOST:PORT
// Admin (create topic, AlterConfigs, DescribeConfigs), a gzip-compressed idempotent
// producer, a consumer group that commits and a second member that resumes after the
// committed offsets, and a transaction that commits and one that aborts (read_committed
// consumers see only the committed one). Exits non-zero with a message on any mismatch.
import { Kafka, CompressionTypes, logLevel } from "kafkajs";

const bootstrap = process.argv[2];
const kafka = new Kafka({ clientId: "kafkajs-test", brokers: [bootstrap], logLevel: logLevel.WARN });
const topic = "js-roundtrip";
const fail = (msg) => {
  console.error(`FAIL: ${msg}`);
  process.exit(1);
};

const admin = kafka.admin();
await admin.connect();
await admin.createTopics({ topics: [{ topic, numPartitions: 3 }], waitForLeaders: true });
// KafkaJS changes configs with AlterConfigs (key 33) only.
await admin.alterConfigs({
  validateOnly: false,
  resources: [{ type: 2, name: topic, configEntries: [{ name: "retention.ms", value: "3600000" }] }],
});
const described = await admin.describeConfigs({
  includeSynonyms: false,
  resources: [{ type: 2, name: topic, configNames: ["retention.ms"] }],
});
const retention = described.resources[0].configEntries.find((c) => c.configName === "retention.ms");
if (!retention || retention.configValue !== "3600000") fail(`retention.ms after alterConfigs: ${JSON.stringify(retention)}`);

const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
await producer.connect();
const messages = Array.from({ length: 300 }, (_, i) => ({ key: `k${i}`, value: `v${i}` }));
await producer.send({ topic, compression: CompressionTypes.GZIP, acks: -1, messages });

async function consume(groupId, want) {
  const consumer = kafka.consumer({ groupId, sessionTimeout: 10000, heartbeatInterval: 500 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  const got = [];
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${groupId}: got ${got.length} of ${want}`)), 60000);
    consumer
      .run({
        eachMessage: async ({ message }) => {
          got.push(message.value.toString());
          if (got.length >= want) {
            clearTimeout(timer);
            resolve();
          }
        },
      })
      .catch(reject);
  }).catch((e) => fail(e.message));
  await consumer.disconnect(); // commits what was consumed
  return got;
}

const first = await consume("js-group", 300);
if (new Set(first).size !== 300) fail(`expected 300 distinct values, got ${new Set(first).size}`);
await producer.send({ topic, acks: -1, messages: [{ key: "late", value: "late-1" }, { key: "late", value: "late-2" }] });
const second = await consume("js-group", 2);
if (JSON.stringify(second) !== JSON.stringify(["late-1", "late-2"])) fail(`resume after commit: ${JSON.stringify(second)}`);

// Transactions: one committed, one aborted.
const txTopic = "js-txn";
await admin.createTopics({ topics: [{ topic: txTopic, numPartitions: 1 }], waitForLeaders: true });
const tx = kafka.producer({ transactionalId: "js-tx", idempotent: true, maxInFlightRequests: 1 });
await tx.connect();
let t = await tx.transaction();
await t.send({ topic: txTopic, messages: [{ value: "committed-1" }, { value: "committed-2" }] });
await t.commit();
t = await tx.transaction();
await t.send({ topic: txTopic, messages: [{ value: "aborted" }] });
await t.abort();
t = await tx.transaction();
await t.send({ topic: txTopic, messages: [{ value: "committed-3" }] });
await t.commit();
const reader = kafka.consumer({ groupId: "js-txn-reader", readUncommitted: false });
await reader.connect();
await reader.subscribe({ topic: txTopic, fromBeginning: true });
const seen = [];
await new Promise((resolve, reject) => {
  const timer = setTimeout(() => reject(new Error(`txn reader: ${JSON.stringify(seen)}`)), 60000);
  reader
    .run({
      eachMessage: async ({ message }) => {
        seen.push(message.value.toString());
        if (seen.length >= 3) {
          clearTimeout(timer);
          resolve();
        }
      },
    })
    .catch(reject);
}).catch((e) => fail(e.message));
if (JSON.stringify(seen) !== JSON.stringify(["committed-1", "committed-2", "committed-3"])) fail(`read_committed: ${JSON.stringify(seen)}`);

await reader.disconnect();
await tx.disconnect();
await producer.disconnect();
await admin.disconnect();
console.log("kafkajs: ok");
