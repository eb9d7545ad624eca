/**
 * Acceptance throughput of the queue:
 * `node bench/queue.ts [--dir <parent>] [--seconds <n>] [--preallocate <bytes>]`.
 *
 * Prints one JSON line per scenario. "spool": N concurrent writers each loop begin, write
 * 1 KiB, commit (fdatasync on, group-committed), release, which is the durable half of every
 * 250; it reports commits per second and fdatasyncs per commit. "queue": the same through
 * `Queue.begin`/`commit` with a memory event log (so the log's own fsync is not counted) and
 * a discard domain, delivery fibers running alongside. Files go to a fresh directory under
 * `--dir` (default: the OS temp directory), removed at the end; the numbers only mean something
 * on the disk the daemon would use.
 */
import { Effect } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import type * as Event from "../src/log/Event.ts"
import { EventLog, makeMemory } from "../src/log/EventLog.ts"
import * as Queue from "../src/queue/Queue.ts"
import * as Spool from "../src/queue/Spool.ts"

const argument = (name: string): string | undefined => {
  const index = process.argv.indexOf(name)
  return index >= 0 ? process.argv[index + 1] : undefined
}
const parent = argument("--dir") ?? Os.tmpdir()
const seconds = Number(argument("--seconds") ?? "3")
const preallocate = Number(argument("--preallocate") ?? String(Spool.defaultPreallocate))
const concurrencies = [20, 200]
const messageSize = 1024
const message = new Uint8Array(messageSize).fill(0x61)

const print = (result: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(result)}\n`)

/** Runs `once` on `concurrency` fibers until the time is up; returns how many ran and how long it took. */
const load = <E>(concurrency: number, once: Effect.Effect<void, E>) =>
  Effect.gen(function*() {
    const deadline = performance.now() + seconds * 1000
    let count = 0
    const start = performance.now()
    yield* Effect.forEach(
      Array.from({ length: concurrency }),
      () =>
        Effect.whileLoop({
          while: () => performance.now() < deadline,
          body: () => once,
          step: () => void count++
        }),
      { concurrency: "unbounded", discard: true }
    )
    return { count, elapsed: (performance.now() - start) / 1000 }
  })

const spoolScenario = (directory: string, concurrency: number) =>
  Effect.scoped(Effect.gen(function*() {
    const spool = yield* Spool.make({
      directory,
      partition: `s${concurrency}`,
      segmentSize: 64 * 1024 * 1024,
      preallocate
    })
    const once = Effect.gen(function*() {
      const txn = yield* spool.begin
      yield* txn.write(message)
      const committed = yield* txn.commit
      yield* spool.release(committed.reference)
    })
    const { count, elapsed } = yield* load(concurrency, once)
    const stats = yield* spool.stats
    print({
      scenario: "spool",
      concurrency,
      preallocate,
      messageBytes: messageSize,
      commits: count,
      seconds: Number(elapsed.toFixed(3)),
      commitsPerSecond: Math.round(count / elapsed),
      fsyncs: stats.fsyncs,
      fsyncsPerCommit: Number((stats.fsyncs / stats.commits).toFixed(4)),
      writesPerCommit: Number((stats.writes / stats.commits).toFixed(4))
    })
  }))

const queueScenario = (directory: string, concurrency: number) =>
  Effect.scoped(Effect.gen(function*() {
    const sink: Array<Event.Event> = []
    const queue = yield* Queue.make({
      spoolDirectory: directory,
      partition: `q${concurrency}`,
      segmentSize: 64 * 1024 * 1024,
      maildirRoot: Path.join(directory, "mail"),
      hostname: "bench.test",
      localDomains: () => [{ domain: "discard.test", users: "*", transport: "discard" }],
      deliveryConcurrency: 4,
      retryBase: 60_000,
      recovered: []
    }).pipe(Effect.provideService(EventLog, EventLog.of(makeMemory(sink))))
    const envelope: Event.Envelope = { from: "a@bench.test", to: ["b@discard.test"], smtputf8: false }
    const once = Effect.gen(function*() {
      const txn = yield* queue.begin()
      yield* txn.write(message)
      yield* queue.commit(txn, envelope, "bench")
    })
    const { count, elapsed } = yield* load(concurrency, once)
    const drainStart = performance.now()
    yield* queue.drain
    print({
      scenario: "queue",
      concurrency,
      messageBytes: messageSize,
      commits: count,
      seconds: Number(elapsed.toFixed(3)),
      commitsPerSecond: Math.round(count / elapsed),
      drainSeconds: Number(((performance.now() - drainStart) / 1000).toFixed(3)),
      eventsLogged: sink.length
    })
  }))

const main = Effect.gen(function*() {
  const directory = yield* Effect.acquireRelease(
    Effect.promise(() => Fs.mkdtemp(Path.join(parent, "postern-bench-queue-"))),
    (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
  )
  for (const concurrency of concurrencies) yield* spoolScenario(directory, concurrency)
  for (const concurrency of concurrencies) yield* queueScenario(directory, concurrency)
})

Effect.runPromise(Effect.scoped(main)).catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`)
  process.exit(1)
})
