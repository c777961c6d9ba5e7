#!/usr/bin/env python3
"""Apache Flink side of issue 5's throughput comparison (tumbling count + sum per key).

Runs, in a local PyFlink mini cluster at parallelism 1, the SQL equivalent of
`sluice bench window --kinds tumbling`:

    datagen (N rows) -> 1 s TUMBLE on event time, GROUP BY key: COUNT(*), SUM(v) -> blackhole

Data, chosen to match Sluice's in-process generator (crates/sluice/src/cmd/bench_window.rs):
  * key = random int in [0, 1000), v = random int in [0, 100)
  * event time from a datagen sequence `seq` (0 .. N-1): t = seq / 10 ms (10 events per ms
    of event time), active 700 of every 1000 ms (t + t / 700 * 300), so a 1 s window holds
    7000 events over 1000 keys, as in Sluice's default run;
  * disorder: 20 % of rows are moved back by a random 0..200 ms; the watermark is
    `ts - 200 ms`, so nothing is late (Sluice: --disorder-ms 200 --disorder-share 0.2).
  Differences kept on purpose (both favour Flink): the key is an int (Sluice: a string
  "k123") and Flink reads typed rows (Sluice decodes a JSON line per event).

Timing: `startup` = Python start -> TableEnvironment ready (JVM gateway launch); then an
unreported warm-up job over WARMUP rows (JIT), a 10k-row job (fixed cost of submitting,
deploying and finishing a job on a warm JVM) and the measured job, each timed from
execute_sql(INSERT) to wait() returning. Printed rates: N / job time (startup excluded),
N / (job - 10k-row job) (fixed per-job cost also excluded) and N / total wall time
(JVM start, warm-up jobs and everything else included). The JVM's CPU time during the
measured job is printed too: at parallelism 1 the source and the window operator are two
tasks (a keyed exchange separates them), plus GC/JIT threads, so Flink can keep more than
one core busy; events per JVM CPU second is the per-core figure.

Not part of CI, needs Java 17 and PyFlink from PyPI in a venv outside the repo:

    python3 -m venv /tmp/flinkenv && /tmp/flinkenv/bin/pip install apache-flink==2.2.0
    /tmp/flinkenv/bin/python scripts/bench-flink.py --events 20000000
"""

import argparse
import time

T0 = time.perf_counter()

from pyflink.java_gateway import get_gateway  # noqa: E402
from pyflink.table import EnvironmentSettings, TableEnvironment  # noqa: E402


def jvm_cpu_seconds():
    """CPU time (user + system, all threads) used so far by the JVM running the mini cluster."""
    info = get_gateway().jvm.java.lang.ProcessHandle.current().info()
    return info.totalCpuDuration().get().toMillis() / 1000


def run_job(t_env, rows, keys, tag):
    src, sink = f"src_{tag}", f"sink_{tag}"
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {src} (
            seq BIGINT,
            key INT,
            v INT,
            d INT,
            j INT,
            ts AS TO_TIMESTAMP_LTZ(
                1700000000000 + seq / 10 + (seq / 7000) * 300
                - CASE WHEN d < 2000 THEN j ELSE 0 END, 3),
            WATERMARK FOR ts AS ts - INTERVAL '0.2' SECOND
        ) WITH (
            'connector' = 'datagen',
            'rows-per-second' = '1000000000',
            'number-of-rows' = '{rows}',
            'fields.seq.kind' = 'sequence',
            'fields.seq.start' = '0',
            'fields.seq.end' = '{rows - 1}',
            'fields.key.min' = '0', 'fields.key.max' = '{keys - 1}',
            'fields.v.min' = '0', 'fields.v.max' = '99',
            'fields.d.min' = '0', 'fields.d.max' = '9999',
            'fields.j.min' = '0', 'fields.j.max' = '200'
        )""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY TABLE {sink} (
            key INT, window_start TIMESTAMP(3), window_end TIMESTAMP(3), cnt BIGINT, total BIGINT
        ) WITH ('connector' = 'blackhole')""")
    start = time.perf_counter()
    t_env.execute_sql(f"""
        INSERT INTO {sink}
        SELECT key, window_start, window_end, COUNT(*), SUM(CAST(v AS BIGINT))
        FROM TABLE(TUMBLE(TABLE {src}, DESCRIPTOR(ts), INTERVAL '1' SECOND))
        GROUP BY key, window_start, window_end""").wait()
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--events", type=int, default=20_000_000)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--warmup", type=int, default=1_000_000, help="rows of the JIT warm-up job")
    a = p.parse_args()

    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    t_env.get_config().set("parallelism.default", "1")
    startup = time.perf_counter() - T0

    run_job(t_env, a.warmup, a.keys, "warmup")  # JIT warm-up, not reported
    fixed = run_job(t_env, 10_000, a.keys, "fixed")
    cpu0 = jvm_cpu_seconds()
    job = run_job(t_env, a.events, a.keys, "main")
    cpu = jvm_cpu_seconds() - cpu0
    total = time.perf_counter() - T0

    import pyflink
    print(f"flink {pyflink.version.__version__}, parallelism 1, {a.events} events, {a.keys} keys")
    print(f"startup (JVM + TableEnvironment)  {startup:8.2f} s")
    print(f"10k-row job (fixed per-job cost)  {fixed:8.2f} s")
    print(f"job ({a.events} rows)             {job:8.2f} s")
    print(f"JVM CPU time during the job       {cpu:8.2f} s ({cpu / job:.2f} cores busy)")
    print(f"events/s, job only                {a.events / job:12.0f}")
    print(f"events/s per JVM CPU second       {a.events / cpu:12.0f}")
    if job > fixed:
        print(f"events/s, job minus 10k-row job   {a.events / (job - fixed):12.0f}")
    print(f"events/s, total wall time         {a.events / total:12.0f}")


if __name__ == "__main__":
    main()
