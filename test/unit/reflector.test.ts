import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { WireMeta } from '../../src/domain/wire.ts';
import { Reflector, type ReflectorHandler, type ReflectorOptions, type WatchEventType } from '../../src/watch/reflector.ts';

/** Any object with a name and a resourceVersion (the reflector reads nothing else of it). */
type Obj = { metadata: Required<Pick<WireMeta, 'name' | 'resourceVersion'>>; v: number };
const obj = (name: string, rv: number, v = rv): Obj => ({ metadata: { name, resourceVersion: String(rv) }, v });

/** A fake API: objects with a resourceVersion counter, a list, and watches the test drives by hand. */
function fakeApi() {
  const objects = new Map<string, Obj>();
  let rv = 0;
  const watches: { rv: string; emit: (t: WatchEventType, o: unknown) => void; end: (err?: unknown) => void; aborted: boolean }[] = [];
  let listFailures = 0;
  const lists: number[] = [];
  return {
    objects,
    watches,
    lists,
    put(name: string, v?: number) {
      rv += 1;
      objects.set(name, obj(name, rv, v));
      return objects.get(name) as Obj;
    },
    failNextLists(n: number) {
      listFailures = n;
    },
    list: async () => {
      lists.push(rv);
      if (listFailures > 0) {
        listFailures -= 1;
        throw Object.assign(new Error('connect ECONNREFUSED'), { cause: { code: 'ECONNREFUSED' } });
      }
      return { items: [...objects.values()], resourceVersion: String(rv), continueToken: undefined };
    },
    watch: async (resourceVersion: string, onEvent: (t: WatchEventType, o: unknown) => void, onDone: (err: unknown) => void) => {
      const w = { rv: resourceVersion, emit: onEvent, end: (err?: unknown) => onDone(err ?? null), aborted: false };
      watches.push(w);
      return { abort: () => ((w.aborted = true), onDone(null)) };
    },
  };
}

function recorder() {
  const events: string[] = [];
  return {
    events,
    handler: {
      add: (k: string, o: Obj) => events.push(`add ${k} ${o.v}`),
      update: (k: string, o: Obj, old: Obj) => events.push(`update ${k} ${old.v}->${o.v}`),
      delete: (k: string, old: Obj) => events.push(`delete ${k} ${old.v}`),
    },
  };
}

const tick = () => new Promise((r) => setImmediate(r));

function make(
  api: ReturnType<typeof fakeApi>,
  handler: ReflectorHandler<Obj>,
  delays: number[] = [],
  overrides: Partial<ReflectorOptions<Obj, Obj>> = {},
) {
  return new Reflector<Obj, Obj>({
    name: 'test',
    list: api.list,
    watch: api.watch,
    slim: (raw) => ({ key: raw.metadata.name, obj: raw, resourceVersion: raw.metadata.resourceVersion }),
    handler,
    backoff: { initialMs: 100, maxMs: 1000 },
    random: () => 1,
    delay: async (ms) => {
      delays.push(ms);
      await tick();
    },
    ...overrides,
  });
}

test('lists, then applies watch events; repeats of a resourceVersion are ignored', async () => {
  const api = fakeApi();
  api.put('a');
  api.put('b');
  const rec = recorder();
  const r = make(api, rec.handler);
  r.start();
  await r.synced;
  await tick();
  assert.deepEqual(rec.events, ['add a 1', 'add b 2']);
  assert.equal(api.watches.at(-1)?.rv, '2');
  const w = api.watches.at(-1);
  assert.ok(w);
  w.emit('MODIFIED', api.put('a', 10));
  w.emit('MODIFIED', api.objects.get('a'));
  w.emit('ADDED', api.put('c'));
  w.emit('DELETED', api.objects.get('b'));
  w.emit('BOOKMARK', { metadata: { resourceVersion: '99' } });
  assert.deepEqual(rec.events.slice(2), ['update a 1->10', 'add c 4', 'delete b 2']);
  assert.equal(r.stats.resourceVersion, '99');
  await r.stop();
});

test('410 Gone relists and diffs: no spurious deletes, no duplicate adds', async () => {
  const api = fakeApi();
  api.put('keep');
  api.put('change');
  api.put('remove');
  const rec = recorder();
  const r = make(api, rec.handler);
  r.start();
  await r.synced;
  await tick();
  rec.events.length = 0;
  // While the watch is "away", the world changes; then the server says the version is too old.
  api.put('change', 50);
  api.objects.delete('remove');
  api.put('new');
  api.watches.at(-1)?.emit('ERROR', { kind: 'Status', code: 410, message: 'too old resource version' });
  for (let i = 0; i < 10 && rec.events.length < 3; i++) await tick();
  assert.deepEqual(rec.events.sort(), ['add new 5', 'delete remove 3', 'update change 2->50']);
  assert.equal(r.stats.relists, 1);
  assert.equal(api.lists.length, 2);
  await r.stop();
});

test('a watch that breaks resumes from the last version without relisting', async () => {
  const api = fakeApi();
  api.put('a');
  const rec = recorder();
  const delays: number[] = [];
  const r = make(api, rec.handler, delays);
  r.start();
  await r.synced;
  await tick();
  api.watches.at(-1)?.emit('ADDED', api.put('b'));
  api.watches.at(-1)?.end(Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }));
  for (let i = 0; i < 5; i++) await tick();
  assert.equal(api.lists.length, 1, 'no relist');
  assert.equal(api.watches.at(-1)?.rv, '2', 'resumed from the last event');
  assert.equal(r.stats.restarts, 1);
  assert.equal(delays.length, 1);
  await r.stop();
});

test('first list failures retry with capped exponential backoff; synced waits for success', async () => {
  const api = fakeApi();
  api.put('a');
  api.failNextLists(6);
  const rec = recorder();
  const delays: number[] = [];
  const r = make(api, rec.handler, delays);
  let synced = false;
  void r.synced.then(() => (synced = true));
  r.start();
  for (let i = 0; i < 40 && !synced; i++) await tick();
  assert.equal(synced, true);
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000], 'doubling, capped at maxMs');
  assert.match(r.stats.lastError ?? '', /ECONNREFUSED/);
  assert.deepEqual(rec.events, ['add a 1']);
  await r.stop();
});

test('jitter spreads retries between half and all of the cap', async () => {
  const api = fakeApi();
  api.failNextLists(1);
  const delays: number[] = [];
  const r = make(api, recorder().handler, delays, { random: () => 0 });
  r.start();
  await r.synced;
  assert.deepEqual(delays, [50]);
  await r.stop();
});

test('a handler that throws is isolated and counted; later events still flow', async () => {
  const api = fakeApi();
  api.put('boom');
  api.put('fine');
  const seen: string[] = [];
  const errors: string[] = [];
  const handler = {
    add: (k: string) => {
      if (k === 'boom') throw new Error('handler bug');
      seen.push(k);
    },
    update: () => {},
    delete: () => {},
  };
  const r = make(api, handler, [], { log: { info() {}, warn() {}, error: (fields) => errors.push(JSON.stringify(fields)) } });
  r.start();
  await r.synced;
  assert.deepEqual(seen, ['fine']);
  assert.equal(r.stats.handlerErrors, 1);
  assert.match(errors[0] ?? '', /handler bug/);
  await r.stop();
});
