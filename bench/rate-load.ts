// A fixed-rate (open-loop) load generator, wrk2's idea in a few lines: requests are scheduled at a
// constant rate whatever the answers do, and each latency is measured from the request's *scheduled*
// time, so a stall shows in the percentiles instead of hiding behind a paused sender (coordinated
// omission). Microsecond resolution (autocannon records whole milliseconds).
// Usage: node rate-load.ts <url> <requests/s> <seconds> <connections>; prints one JSON line.

import { Pool } from 'undici';

const [url = '', rateArg = '1000', secondsArg = '10', connectionsArg = '10'] = process.argv.slice(2);
const rate = Number(rateArg);
const seconds = Number(secondsArg);
const target = new URL(url);
const pool = new Pool(target.origin, { connections: Number(connectionsArg), pipelining: 1 });
const path = target.pathname + target.search;

const latencies: number[] = [];
let errors = 0;
const total = Math.round(rate * seconds);
const interval = 1000 / rate;
const start = performance.now() + 50;
let sent = 0;
let done = 0;

await new Promise<void>((finished) => {
  const fire = (scheduled: number): void => {
    pool
      .request({ path, method: 'GET' })
      .then(
        async (res) => {
          await res.body.dump();
          if (res.statusCode >= 400) errors += 1;
          else latencies.push(performance.now() - scheduled);
        },
        () => (errors += 1),
      )
      .finally(() => {
        done += 1;
        if (done === total) finished();
      });
  };
  const tick = (): void => {
    // Send everything whose time has come (timers are coarse; the schedule is not).
    const now = performance.now();
    while (sent < total && start + sent * interval <= now) fire(start + sent++ * interval);
    if (sent < total) setTimeout(tick, Math.max(0, start + sent * interval - performance.now()));
  };
  setTimeout(tick, 50);
});
await pool.close();
latencies.sort((a, b) => a - b);
const at = (p: number): number => latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] ?? NaN;
console.log(
  JSON.stringify({ requests: total, errors, p50: at(50), p90: at(90), p99: at(99), p999: at(99.9), max: latencies.at(-1) ?? NaN }),
);
