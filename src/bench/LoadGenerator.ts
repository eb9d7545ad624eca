/**
 * `postern bench`'s engine on the main thread: starts the worker threads, splits the
 * connections among them, starts them together, sums their progress every interval and merges
 * their final counters and histograms into a {@link Report}.
 */
import * as WorkerThreads from "node:worker_threads"
import { Effect, Schema } from "effect"
import type { LoadOptions, TlsMode, TlsVersion } from "./LoadOptions.ts"
import type { FromWorker, Negotiated, ToWorker, WorkerInput } from "./LoadWorker.ts"
import * as Stats from "./Stats.ts"

/** The load could not run (a worker failed to start or crashed). */
export class LoadError extends Schema.TaggedError<LoadError>()("LoadError", {
  message: Schema.String
}) {}

/** Rates over the last progress interval, and totals so far. */
export interface Progress {
  readonly seconds: number
  readonly connectionsPerSec: number
  readonly fullHandshakesPerSec: number
  readonly resumedHandshakesPerSec: number
  readonly messagesPerSec: number
  readonly totals: Stats.Counters
  readonly errors: number
}

/** The result of a run, as `--json` prints it. */
export interface Report {
  readonly target: string
  readonly tls: TlsMode
  readonly servername: string | null
  readonly verify: boolean
  readonly minVersion: TlsVersion
  readonly maxVersion: TlsVersion
  readonly resume: boolean
  readonly concurrency: number
  readonly threads: number
  readonly messagesPerConnection: number
  readonly size: number
  readonly durationSeconds: number
  /** From the start to the end of the last connection (those under way at the deadline finish). */
  readonly elapsedSeconds: number
  /** Connections started, and those that ended with QUIT. */
  readonly attempts: number
  readonly connections: number
  readonly connectionsPerSec: number
  /** What the first full handshake negotiated (null without TLS or without a handshake). */
  readonly negotiated: Negotiated | null
  readonly handshakes: {
    readonly full: number
    readonly resumed: number
    readonly fullPerSec: number
    readonly resumedPerSec: number
    /** ClientHello to `secureConnect`, full and resumed together. */
    readonly latencyMs: Stats.LatencySummary
  }
  readonly messages: {
    readonly count: number
    readonly perSec: number
    /** MAIL to the 250 after the final dot. */
    readonly latencyMs: Stats.LatencySummary
  }
  /**
   * CPU seconds the load generator (all its threads) used while the load ran, and that over the
   * elapsed time: near the number of threads, the generator may be what limits the rates.
   */
  readonly clientCpuSeconds: number
  readonly clientCpuCores: number
  readonly errors: {
    readonly total: number
    readonly byKind: Record<string, number>
    /** A few details of each kind. */
    readonly samples: Record<string, Array<string>>
  }
}

const workerUrl = new URL("./LoadWorker.ts", import.meta.url)

const rate = (count: number, seconds: number) => seconds > 0 ? Math.round((count / seconds) * 10) / 10 : 0

/** Splits `total` connections over `threads` workers, the first ones taking the remainder. */
export const split = (total: number, threads: number): Array<number> => {
  const n = Math.max(1, Math.min(threads, total))
  return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0))
}

/** Builds the report from the merged results of every worker. */
export const report = (
  options: LoadOptions,
  threads: number,
  elapsedSeconds: number,
  counters: Stats.Counters,
  handshakes: Stats.Histogram,
  messages: Stats.Histogram,
  samples: Record<string, Array<string>>,
  clientCpuSeconds: number,
  negotiated: Negotiated | undefined
): Report => ({
  target: options.host.includes(":") ? `[${options.host}]:${options.port}` : `${options.host}:${options.port}`,
  tls: options.tls,
  servername: options.servername ?? null,
  verify: options.ca !== undefined,
  minVersion: options.minVersion,
  maxVersion: options.maxVersion,
  resume: options.resume,
  concurrency: options.concurrency,
  threads,
  messagesPerConnection: options.messagesPerConnection,
  size: options.size,
  durationSeconds: options.durationMs / 1000,
  elapsedSeconds: Math.round(elapsedSeconds * 1000) / 1000,
  attempts: counters.attempts,
  connections: counters.connections,
  connectionsPerSec: rate(counters.connections, elapsedSeconds),
  negotiated: negotiated ?? null,
  handshakes: {
    full: counters.fullHandshakes,
    resumed: counters.resumedHandshakes,
    fullPerSec: rate(counters.fullHandshakes, elapsedSeconds),
    resumedPerSec: rate(counters.resumedHandshakes, elapsedSeconds),
    latencyMs: Stats.summarize(handshakes)
  },
  messages: {
    count: counters.messages,
    perSec: rate(counters.messages, elapsedSeconds),
    latencyMs: Stats.summarize(messages)
  },
  clientCpuSeconds: Math.round(clientCpuSeconds * 1000) / 1000,
  clientCpuCores: elapsedSeconds > 0 ? Math.round((clientCpuSeconds / elapsedSeconds) * 100) / 100 : 0,
  errors: { total: Stats.errorTotal(counters), byKind: counters.errors, samples }
})

/**
 * Runs the load described by `options` and reports it. `onProgress` is called every progress
 * interval while it runs. Interrupting the effect stops the workers at once.
 */
export const run = (
  options: LoadOptions,
  onProgress: (progress: Progress) => void = () => undefined
): Effect.Effect<Report, LoadError> =>
  Effect.callback<Report, LoadError>((resume) => {
    const shares = split(options.concurrency, options.threads)
    const workers: Array<WorkerThreads.Worker> = []
    const latest: Array<Stats.Counters> = shares.map(() => Stats.emptyCounters())
    const finals: Array<Extract<FromWorker, { type: "done" }> | undefined> = shares.map(() => undefined)
    let ready = 0
    let startedAt = 0
    let cpuAtStart = process.cpuUsage()
    let settled = false
    let ticker: ReturnType<typeof setInterval> | undefined
    let previous = Stats.emptyCounters()
    let previousAt = 0

    const cleanup = () => {
      settled = true
      if (ticker !== undefined) clearInterval(ticker)
      for (const worker of workers) void worker.terminate()
    }

    const failWith = (message: string) => {
      if (settled) return
      cleanup()
      resume(Effect.fail(new LoadError({ message })))
    }

    const total = (): Stats.Counters => {
      const sum = Stats.emptyCounters()
      for (const c of latest) Stats.addCounters(sum, c)
      return sum
    }

    const tick = () => {
      const at = performance.now()
      const totals = total()
      const seconds = (at - previousAt) / 1000
      onProgress({
        seconds: (at - startedAt) / 1000,
        connectionsPerSec: rate(totals.connections - previous.connections, seconds),
        fullHandshakesPerSec: rate(totals.fullHandshakes - previous.fullHandshakes, seconds),
        resumedHandshakesPerSec: rate(totals.resumedHandshakes - previous.resumedHandshakes, seconds),
        messagesPerSec: rate(totals.messages - previous.messages, seconds),
        totals,
        errors: Stats.errorTotal(totals)
      })
      previous = totals
      previousAt = at
    }

    const finishIfDone = () => {
      if (settled || finals.some((f) => f === undefined)) return
      const elapsed = (performance.now() - startedAt) / 1000
      const cpu = process.cpuUsage(cpuAtStart)
      const counters = Stats.emptyCounters()
      const handshakes = Stats.make()
      const messages = Stats.make()
      const samples: Record<string, Array<string>> = {}
      for (const f of finals) {
        if (f === undefined) continue
        Stats.addCounters(counters, f.counters)
        Stats.merge(handshakes, f.handshakes)
        Stats.merge(messages, f.messages)
        for (const [kind, details] of Object.entries(f.samples)) {
          samples[kind] = [...(samples[kind] ?? []), ...details]
        }
      }
      cleanup()
      resume(
        Effect.succeed(
          report(options, shares.length, elapsed, counters, handshakes, messages, samples, (cpu.user + cpu.system) / 1e6,
            finals.find((f) => f?.negotiated !== undefined)?.negotiated
          )
        )
      )
    }

    const send = (message: ToWorker) => {
      for (const worker of workers) worker.postMessage(message)
    }

    shares.forEach((connections, index) => {
      const input: WorkerInput = { kind: "postern-bench-worker", options, connections }
      const worker = new WorkerThreads.Worker(workerUrl, { workerData: input })
      workers.push(worker)
      worker.on("message", (message: FromWorker) => {
        if (settled) return
        if (message.type === "ready") {
          ready += 1
          if (ready === shares.length) {
            startedAt = performance.now()
            cpuAtStart = process.cpuUsage()
            previousAt = startedAt
            ticker = setInterval(tick, options.progressIntervalMs)
            send({ type: "start" })
          }
        } else if (message.type === "progress") {
          latest[index] = message.counters
        } else {
          latest[index] = message.counters
          finals[index] = message
          finishIfDone()
        }
      })
      worker.on("error", (error) => failWith(`load worker ${index} failed: ${error.message}`))
      worker.on("exit", (code) => {
        if (finals[index] === undefined) failWith(`load worker ${index} exited (code ${code}) before reporting`)
      })
    })
    return Effect.sync(() => {
      if (!settled) {
        send({ type: "stop" })
        cleanup()
      }
    })
  })
