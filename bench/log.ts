/**
 * Event log throughput: `node bench/log.ts [--dir <parent>]`.
 *
 * Prints one JSON line per scenario: msgpack encoding alone, then the file writer under 200
 * concurrent appenders (the shape of 200 busy sessions) with fsync "always" and an
 * appendDurable every 20th event, and with fsync "interval". Files go to a fresh directory
 * under `--dir` (default: the OS temp directory), removed at the end; fsync numbers are only
 * meaningful on the disk the daemon would use.
 */
import { Effect } from "effect"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Event from "../src/log/Event.ts"
import * as LogCodec from "../src/log/LogCodec.ts"
import * as LogRecord from "../src/log/LogRecord.ts"
import * as LogWriter from "../src/log/LogWriter.ts"

const settings = {
  encodeEvents: 300_000,
  appenders: 200,
  eventsPerAppender: 1000,
  durableEvery: 20,
  rotateBytes: 64 * 1024 * 1024,
  fsyncIntervalMs: 100
}

const dirArg = process.argv.indexOf("--dir")
const parent = dirArg >= 0 ? (process.argv[dirArg + 1] ?? Os.tmpdir()) : Os.tmpdir()

/** What one session typically logs per command: the command and its reply. */
const sessionEvents = (session: string, index: number, at: number): [Event.Event, Event.Event] => [
  Event.make("CommandReceived", { session, at, line: `RCPT TO:<user${index}@example.test>` }),
  Event.make("ReplySent", { session, at, code: 250, enhanced: "2.1.5", lines: ["OK"] })
]

const print = (result: Record<string, unknown>) => process.stdout.write(`${JSON.stringify(result)}\n`)

const encodeOnly = () => {
  const events = Array.from({ length: 1000 }, (_, i) => sessionEvents(`s${i % 50}`, i, Date.now() + i)).flat()
  for (const event of events) LogCodec.encode(event)
  let bytes = 0
  const start = performance.now()
  let encoded = 0
  while (encoded < settings.encodeEvents) {
    for (const event of events) {
      if (encoded === settings.encodeEvents) break
      bytes += LogCodec.encode(event).length
      encoded++
    }
  }
  const seconds = (performance.now() - start) / 1000
  print({
    scenario: "encode",
    events: settings.encodeEvents,
    seconds: Number(seconds.toFixed(3)),
    eventsPerSecond: Math.round(settings.encodeEvents / seconds),
    meanBytes: Number((bytes / settings.encodeEvents).toFixed(1))
  })
  const payload = LogCodec.encode(events[0] ?? Event.make("MessageCompleted", { at: 0, queueId: "q" }))
  const frameStart = performance.now()
  for (let i = 0; i < settings.encodeEvents; i++) LogRecord.frame(payload)
  const frameSeconds = (performance.now() - frameStart) / 1000
  print({
    scenario: "encode+frame",
    events: settings.encodeEvents,
    seconds: Number((seconds + frameSeconds).toFixed(3)),
    eventsPerSecond: Math.round(settings.encodeEvents / (seconds + frameSeconds))
  })
}

const writer = (scenario: string, fsync: LogWriter.FsyncPolicy, durableEvery: number | undefined) =>
  Effect.gen(function*() {
    const directory = yield* Effect.acquireRelease(
      Effect.promise(() => Fs.mkdtemp(Path.join(parent, "postern-log-bench-"))),
      (dir) => Effect.promise(() => Fs.rm(dir, { recursive: true, force: true }))
    )
    const log = yield* LogWriter.make({
      directory,
      partition: "w0",
      rotateBytes: settings.rotateBytes,
      fsync,
      fsyncIntervalMs: settings.fsyncIntervalMs
    })
    const before = yield* log.stats
    const start = performance.now()
    yield* Effect.forEach(
      Array.from({ length: settings.appenders }, (_, i) => i),
      (appender) =>
        Effect.gen(function*() {
          const session = `s${appender}`
          for (let i = 0; i < settings.eventsPerAppender; i += 2) {
            const [command, reply] = sessionEvents(session, i, Date.now())
            yield* log.append(command)
            if (durableEvery !== undefined && (i + 2) % durableEvery === 0) yield* log.appendDurable(reply)
            else yield* log.append(reply)
            yield* Effect.yieldNow
          }
        }),
      { concurrency: "unbounded", discard: true }
    )
    yield* log.sync
    const seconds = (performance.now() - start) / 1000
    const after = yield* log.stats
    const events = after.written - before.written
    print({
      scenario,
      fsync,
      appenders: settings.appenders,
      durableEvery: durableEvery ?? null,
      events,
      seconds: Number(seconds.toFixed(3)),
      eventsPerSecond: Math.round(events / seconds),
      batches: after.batches - before.batches,
      fsyncs: after.fsyncs - before.fsyncs,
      bytes: after.bytes - before.bytes
    })
  }).pipe(Effect.scoped)

encodeOnly()
await Effect.runPromise(
  Effect.gen(function*() {
    yield* writer("writer-always-durable", "always", settings.durableEvery)
    yield* writer("writer-interval", "interval", undefined)
    yield* writer("writer-interval-durable", "interval", settings.durableEvery)
  })
)
