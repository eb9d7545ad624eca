/**
 * A load generator thread: its share of the connections, each started again as soon as the last
 * one ended, until the main thread's duration is up. It reports cumulative counters every
 * progress interval and, at the end, its counters, latency histograms and a few error details.
 *
 * Loaded by {@link LoadGenerator} with `new Worker(...)`; the messages both sides exchange are
 * the types below.
 */
import * as Tls from "node:tls"
import * as WorkerThreads from "node:worker_threads"
import type { LoadOptions } from "./LoadOptions.ts"
import * as Message from "./Message.ts"
import * as SmtpClient from "./SmtpClient.ts"
import * as Stats from "./Stats.ts"

/** What the main thread gives a worker as `workerData`. */
export interface WorkerInput {
  readonly kind: "postern-bench-worker"
  readonly options: LoadOptions
  /** This worker's share of the concurrency. */
  readonly connections: number
}

/** Main thread to worker. */
export type ToWorker =
  | { readonly type: "start" }
  /** Stop starting anything new; connections under way finish. */
  | { readonly type: "stop" }

/** How many error details of each kind a worker keeps for the report. */
export const samplesPerKind = 3

/** Worker to main thread. */
export type FromWorker =
  | { readonly type: "ready" }
  | { readonly type: "progress"; readonly counters: Stats.Counters }
  | {
    readonly type: "done"
    readonly counters: Stats.Counters
    readonly handshakes: Stats.Histogram
    readonly messages: Stats.Histogram
    readonly samples: Record<string, Array<string>>
    readonly negotiated: Negotiated | undefined
  }

/** What the first handshake of a worker negotiated. */
export interface Negotiated {
  readonly protocol: string
  readonly cipher: string
  /** Key exchange group (X25519, X25519MLKEM768, ...); empty when Node does not say. */
  readonly group: string
}

// Node types the ephemeral key as `EphemeralKeyInfo | object | null` ({} on a server or resumption).
const groupOf = (info: unknown): string =>
  typeof info === "object" && info !== null && "name" in info && typeof info.name === "string" ? info.name : ""

/** Runs a worker on `port` until its connections are done; then posts `done`. */
export const start = (port: WorkerThreads.MessagePort, input: WorkerInput): void => {
  const options = input.options
  const counters = Stats.emptyCounters()
  const handshakes = Stats.make()
  const messages = Stats.make()
  const samples: Record<string, Array<string>> = {}
  let deadline = Number.POSITIVE_INFINITY
  let stopped = false
  let session: Buffer | undefined
  let running = 0
  let progress: ReturnType<typeof setInterval> | undefined
  let negotiated: Negotiated | undefined

  const post = (message: FromWorker) => port.postMessage(message)
  const snapshot = (): Stats.Counters => ({ ...counters, errors: { ...counters.errors } })

  const shared: SmtpClient.Shared = {
    options,
    secureContext: options.tls === "none" ? undefined : Tls.createSecureContext({
      minVersion: options.minVersion,
      maxVersion: options.maxVersion,
      ...(options.groups === undefined ? {} : { ecdhCurve: options.groups }),
      ...(options.ca === undefined ? {} : { ca: options.ca })
    }),
    data: Message.dataBytes(options.size, options.from, options.to),
    stopping: () => performance.now() >= deadline
  }

  const observer: SmtpClient.Observer = {
    handshake: (resumed, micros, socket) => {
      if (resumed) counters.resumedHandshakes += 1
      else {
        counters.fullHandshakes += 1
        negotiated ??= {
          protocol: socket.getProtocol() ?? "",
          cipher: socket.getCipher().name,
          group: groupOf(socket.getEphemeralKeyInfo())
        }
      }
      Stats.record(handshakes, micros)
    },
    message: (micros) => {
      counters.messages += 1
      Stats.record(messages, micros)
    },
    session: (next) => {
      if (options.resume) session = next
    },
    finished: (error) => {
      if (error === undefined) counters.connections += 1
      else {
        counters.errors[error.kind] = (counters.errors[error.kind] ?? 0) + 1
        const kept = samples[error.kind] ?? []
        if (kept.length < samplesPerKind) kept.push(error.detail)
        samples[error.kind] = kept
      }
      if (error === undefined) loop()
      else setTimeout(loop, options.errorBackoffMs)
    }
  }

  const loop = () => {
    if (performance.now() >= deadline) {
      running -= 1
      if (running === 0) end()
      return
    }
    counters.attempts += 1
    SmtpClient.run(shared, options.resume ? session : undefined, observer)
  }

  const end = () => {
    if (progress !== undefined) clearInterval(progress)
    post({ type: "done", counters: snapshot(), handshakes, messages, samples, negotiated })
  }

  port.on("message", (message: ToWorker) => {
    if (message.type === "start") {
      deadline = performance.now() + (stopped ? 0 : options.durationMs)
      // Ten reports per printed line, so each line sees counters at most a tenth of it old.
      progress = setInterval(() => post({ type: "progress", counters: snapshot() }), options.progressIntervalMs / 10)
      running = input.connections
      for (let i = 0; i < input.connections; i++) loop()
    } else {
      stopped = true
      deadline = Math.min(deadline, performance.now())
    }
  })
  post({ type: "ready" })
}

const input: unknown = WorkerThreads.workerData
if (
  !WorkerThreads.isMainThread && WorkerThreads.parentPort !== null && typeof input === "object" && input !== null &&
  "kind" in input && input.kind === "postern-bench-worker"
) {
  start(WorkerThreads.parentPort, input as WorkerInput)
}
