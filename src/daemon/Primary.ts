/**
 * The primary process of `postern serve`: validates the configuration, forks one worker per
 * core (each owning partition `w<index>`), restarts a worker that dies so that it recovers its
 * own partition, forwards SIGHUP, and on SIGTERM stops every worker gracefully and exits 0.
 *
 * The listeners are bound in the workers; node:cluster shares each listening socket among
 * them and the kernel hands each connection to one worker, where it stays.
 */
import Cluster, { type Worker } from "node:cluster"
import { Effect } from "effect"
import type * as ConfigModule from "../config/Config.ts"
import * as Config from "../config/Config.ts"

export interface PrimaryOptions {
  readonly config: ConfigModule.ConfigShape
  readonly configFile: string | undefined
  readonly entry: string
}

export const workerEnv = {
  partition: "POSTERN_PARTITION",
  workers: "POSTERN_WORKERS",
  config: "POSTERN_CONFIG",
  /** The configuration the primary validated, so a restarted worker runs what the others run. */
  configJson: "POSTERN_CONFIG_JSON"
} as const

/** The messages a worker sends to the primary over the IPC channel. */
export type WorkerMessage =
  | { readonly type: "listening"; readonly ports: ReadonlyArray<number> }
  /** The worker could not start (a port in use, a listener it cannot serve): restarting would not help. */
  | { readonly type: "failed"; readonly message: string }

const isWorkerMessage = (value: unknown): value is WorkerMessage =>
  typeof value === "object" && value !== null && "type" in value &&
  (value.type === "listening" || value.type === "failed")

export const banner = (config: ConfigModule.ConfigShape, ports: ReadonlyArray<number>): string => {
  const listeners = config.listeners.map((l, i) =>
    `  ${l.role.padEnd(11)} ${`${l.address}:${ports[i] ?? l.port}`.padEnd(21)} ${
      l.security === "implicit" ? "implicit TLS" : l.security === "none" ? "no TLS" : `STARTTLS (${l.security})`
    }`
  ).join("\n")
  const tls = config.tls.selfSignedDirectory !== undefined
    ? `self-signed certificate in ${config.tls.selfSignedDirectory}`
    : config.tls.settings.defaultCertificate?.certificate ?? `${config.tls.settings.domains.length} certificate(s) by SNI`
  const smtp = config.listeners.find((l) => l.role === "smtp") ?? config.listeners[0]
  const domain = config.localDomains[0]?.domain ?? "localhost"
  const tryIt = smtp === undefined
    ? ""
    : `\nSend a test message (add --tls for STARTTLS):\n  swaks --server ${smtp.address}:${smtp.port} --from you@example.com --to postmaster@${domain}\n`
  return `Postern serving as ${config.hostname} with ${config.workers} worker(s)\n` +
    `Listeners:\n${listeners}\n` +
    `Event log:  ${config.log.directory} (fsync ${config.log.fsync})\n` +
    `Spool:      ${config.spool.directory}\n` +
    `Maildir:    ${config.maildirRoot}\n` +
    `TLS:        ${tls}\n` +
    `Local domains: ${config.localDomains.map((d) => `${d.domain} (${d.transport})`).join(", ")}\n` +
    tryIt +
    `Replay sessions: postern replay ${config.log.directory}\n`
}

export const run = (options: PrimaryOptions): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const count = options.config.workers
    let config = options.config
    const byPartition = new Map<string, Worker>()
    let stopping = false
    let listening = 0
    const restarts = new Map<string, number>()

    // Workers accept from the shared listening socket themselves. Node's default on Linux has
    // the primary accept every connection and pass it over IPC, which costs the primary more
    // CPU per connection than a whole SMTP transaction costs the worker.
    Cluster.schedulingPolicy = Cluster.SCHED_NONE
    Cluster.setupPrimary({ exec: options.entry, args: ["worker"] })

    const fork = (partition: string) => {
      const worker = Cluster.fork({
        [workerEnv.partition]: partition,
        [workerEnv.workers]: String(count),
        [workerEnv.config]: options.configFile ?? "",
        [workerEnv.configJson]: Config.toPrimaryJson(config)
      })
      byPartition.set(partition, worker)
      worker.on("message", (message: unknown) => {
        if (!isWorkerMessage(message)) return
        if (message.type === "failed") {
          process.stderr.write(`postern: cannot start: ${message.message}\n`)
          process.exitCode = 1
          return stop()
        }
        listening++
        if (listening === count) {
          process.stdout.write(banner(config, message.ports))
          for (const warning of Config.warnings(config)) process.stderr.write(`postern: warning: ${warning}\n`)
        }
      })
      worker.on("exit", (code, signal) => {
        if (byPartition.get(partition) === worker) byPartition.delete(partition)
        if (stopping) {
          if (byPartition.size === 0) resume(Effect.void)
          return
        }
        const n = (restarts.get(partition) ?? 0) + 1
        restarts.set(partition, n)
        process.stderr.write(`postern: worker ${partition} exited (${signal ?? code}); restarting it (restart ${n})\n`)
        setTimeout(() => {
          if (!stopping) fork(partition)
        }, Math.min(5000, 100 * 2 ** Math.min(n, 6)))
      })
    }

    for (let i = 0; i < count; i++) fork(`w${i}`)

    function stop() {
      if (stopping) return
      stopping = true
      if (process.exitCode !== 1) {
        process.stderr.write("postern: stopping (SIGTERM): no new connections, finishing transactions\n")
      }
      if (byPartition.size === 0) return resume(Effect.void)
      for (const worker of byPartition.values()) worker.process.kill("SIGTERM")
    }
    const reload = () => {
      Effect.runPromise(Effect.result(Config.load(options.configFile))).then((result) => {
        if (result._tag === "Failure") {
          process.stderr.write(`postern: reload refused, keeping the running configuration:\n${result.failure.message}\n`)
          return
        }
        config = { ...result.success, listeners: config.listeners, log: config.log, spool: config.spool, maildirRoot: config.maildirRoot, workers: config.workers }
        process.stderr.write("postern: configuration reloaded (listeners and paths change at restart)\n")
        for (const worker of byPartition.values()) worker.process.kill("SIGHUP")
      })
    }
    process.on("SIGTERM", stop)
    process.on("SIGINT", stop)
    process.on("SIGHUP", reload)
    return Effect.sync(() => {
      process.off("SIGTERM", stop)
      process.off("SIGINT", stop)
      process.off("SIGHUP", reload)
    })
  })
