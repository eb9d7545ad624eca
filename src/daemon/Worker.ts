/**
 * One worker process: it owns a log partition and a queue partition (shared nothing), recovers
 * them at start, serves the listeners, and stops gracefully on SIGTERM.
 */
import * as Crypto from "node:crypto"
import * as Dns from "node:dns/promises"
import * as Path from "node:path"
import { Deferred, Duration, Effect, Layer, Option } from "effect"
import * as ConfigModule from "../config/Config.ts"
import { machineSettings } from "../config/Config.ts"
import * as Event from "../log/Event.ts"
import { EventLog } from "../log/EventLog.ts"
import * as LogReader from "../log/LogReader.ts"
import * as LogWriter from "../log/LogWriter.ts"
import * as DkimSign from "../policy/DkimSign.ts"
import * as DnsLive from "../policy/DnsLive.ts"
import * as Policy from "../policy/Policy.ts"
import { Policy as PolicyService } from "../policy/Policy.ts"
import * as Users from "../auth/Users.ts"
import * as Checkpoint from "../queue/Checkpoint.ts"
import { Queue } from "../queue/Queue.ts"
import * as Listener from "../session/Listener.ts"
import type * as CertStore from "../tls/CertStore.ts"
import * as Handshake from "../tls/Handshake.ts"
import * as Setup from "../tls/Setup.ts"
import * as IoThreads from "./IoThreads.ts"

export interface WorkerOptions {
  readonly config: ConfigModule.ConfigShape
  readonly partition: string
  /** How many workers share the connection limits. */
  readonly workers: number
  /** Completes when the process is asked to stop. */
  readonly stop: Deferred.Deferred<void>
  /** Called once the listeners are bound, with their ports. */
  readonly onListening: (ports: ReadonlyArray<number>) => void
  /**
   * Registers the one-shot callback through which a reloaded configuration (SIGHUP) reaches the
   * worker; settings change for new sessions only, listeners and paths need a restart.
   */
  readonly onReloadRequest: (deliver: (config: ConfigModule.ConfigShape | undefined) => void) => void
}

/**
 * The client's name for Received headers, through getnameinfo (so /etc/hosts is honoured), and
 * never for longer than a moment: a slow resolver must not hold up the greeting.
 */
export const reverseName = (address: string): Effect.Effect<string | undefined> =>
  Effect.tryPromise(() => Dns.lookupService(address, 0)).pipe(
    Effect.map(({ hostname }) => (hostname === address ? undefined : hostname)),
    Effect.timeoutOption(Duration.seconds(2)),
    Effect.map(Option.getOrUndefined),
    Effect.orElseSucceed(() => undefined)
  )

/** Tells the administrator on stderr what the event log records about certificates that need attention. */
const reportCertificates = (
  partition: string,
  events: ReadonlyArray<Event.Event>,
  rejected: ReadonlyArray<{ readonly message: string }>
): void => {
  // One worker speaks for all: they read the same files.
  if (partition !== "w0") return
  for (const event of events) {
    if (event._tag === "CertificateExpiring") {
      process.stderr.write(
        `postern: warning: certificate ${event.file} (${event.name}) expires ${new Date(event.notAfter).toISOString()}\n`
      )
    }
  }
  for (const error of rejected) process.stderr.write(`postern: certificate reload refused, keeping the old one: ${error.message}\n`)
}

export const settingsDigest = (settings: Event.MachineSettings): string =>
  Crypto.createHash("sha256").update(JSON.stringify(settings)).digest("hex").slice(0, 16)

export const run = Effect.fnUntraced(function*(options: WorkerOptions) {
  const { config, partition } = options
  const logLayer = LogWriter.layer({
    directory: config.log.directory,
    partition,
    rotateBytes: config.log.rotateSize,
    fsync: config.log.fsync,
    fsyncIntervalMs: config.log.fsyncInterval
  })
  const settings = machineSettings(config)
  const digest = settingsDigest(settings)
  let current = { settings, digest }
  // A reload changes the rules for every decision from then on.
  const policyOf = (settings: ConfigModule.PolicySettings) =>
    Policy.make(ConfigModule.ruleSet(settings), ConfigModule.shadowRuleSet(settings))
  let policy = policyOf(config.policy)
  const livePolicy = PolicyService.of({
    decide: (context) => policy.decide(context),
    shadow: (context) => policy.shadow(context),
    asks: (...question) => policy.asks(...question),
    get bodyLimit() {
      return policy.bodyLimit
    }
  })
  const policyLayer = Layer.succeed(PolicyService, livePolicy)

  const program = Effect.gen(function*() {
    const log = yield* EventLog
    const writer = yield* LogWriter.LogWriter
    for (const problem of writer.recovery.problems) {
      process.stderr.write(
        problem._tag === "TornTail"
          ? `postern: ${partition}: log ${problem.file} had a torn tail (${problem.reason}); cut ${problem.droppedBytes} bytes at offset ${problem.offset}\n`
          : `postern: ${partition}: log ${problem.file} has no valid header (${problem.reason}); continuing in a new file\n`
      )
    }
    yield* log.appendDurable(Event.make("SettingsRecorded", { at: Date.now(), digest, settings }))
    const tls = yield* Setup.prepare(config)
    // One resolver for every policy check that asks DNS, made only if one does.
    let dns: ReturnType<typeof DnsLive.make> | undefined
    const resolve = () => (dns ??= DnsLive.make(config.dns))
    const users = Users.makeStore(config.auth.usersFile, {
      onLoad: (load) => {
        for (const problem of load.problems) {
          process.stderr.write(`postern: ${partition}: users file ${load.file} line ${problem.line}: ${problem.reason}\n`)
        }
        if (load.error !== undefined && load.error !== "missing") {
          process.stderr.write(`postern: ${partition}: users file ${load.file}: ${load.error}\n`)
        }
      }
    })
    for (const event of tls.events) log.appendUnsafe(event)
    reportCertificates(partition, tls.events, [])
    const store: CertStore.CertStore = tls.store
    const reloadCertificates = (report: CertStore.ReloadReport) =>
      Effect.sync(() => {
        for (const event of report.events) log.appendUnsafe(event)
        reportCertificates(partition, report.events, report.rejected)
      })
    yield* Effect.forkScoped(store.watch(reloadCertificates))
    const listeners = yield* Listener.serve({
      listeners: config.listeners.map((l) => ({
        address: l.address,
        port: l.port,
        role: l.role,
        security: l.security,
        auth: l.auth,
        proxyProtocol: l.proxyProtocol
      })),
      tls: Handshake.make(() => store, { timeout: config.tls.settings.handshakeTimeout }),
      auth: {
        verify: (user, password) => users.verify(user, password),
        failureDelay: config.auth.failureDelay
      },
      spf: config.spf.check ? { resolve: resolve(), timeout: config.spf.timeout, helo: config.spf.helo } : undefined,
      messageAuth: config.dkim.verify ? { resolve: resolve() } : undefined,
      dkimKeys: yield* DkimSign.loadKeys(config.dkim.sign),
      partition,
      current: () => current,
      framing: { maxLineLength: config.limits.lineLength, maxDiscard: config.limits.lineDiscard },
      timeouts: config.timeouts,
      maxConnections: Math.max(1, Math.ceil(config.limits.connections / options.workers)),
      maxConnectionsPerClient: Math.max(1, Math.ceil(config.limits.connectionsPerClient / options.workers)),
      proxyHeaderTimeout: config.timeouts.command,
      resolveName: config.reverseDns ? reverseName : undefined
    })
    // After the log, the spool and the certificates were read: the thread pool has started.
    const lowered = yield* IoThreads.lowerPriority(config.ioThreadNice)
    if (lowered._tag === "Failed" && partition === "w0") {
      process.stderr.write(`postern: ioThreadNice ${config.ioThreadNice} not applied in full: ${lowered.reason}\n`)
    }
    options.onListening(listeners.ports)
    yield* Effect.forkScoped(
      Effect.forever(Effect.gen(function*() {
        const reloaded = yield* Deferred.make<ConfigModule.ConfigShape | undefined>()
        options.onReloadRequest((config) => Deferred.doneUnsafe(reloaded, Effect.succeed(config)))
        const next = yield* Deferred.await(reloaded)
        // Certificates are re-read on every SIGHUP, even when the file did not change or is broken.
        yield* Effect.flatMap(store.reload, reloadCertificates)
        if (next === undefined) return
        policy = policyOf(next.policy)
        const nextSettings = machineSettings(next)
        current = { settings: nextSettings, digest: settingsDigest(nextSettings) }
        yield* log.appendDurable(Event.make("SettingsRecorded", { at: Date.now(), digest: current.digest, settings: nextSettings }))
      }))
    )
    yield* Deferred.await(options.stop)
    yield* listeners.shutdown(config.timeouts.shutdownGrace)
    yield* log.sync
  })

  const queueLayer = Layer.unwrap(
    Effect.gen(function*() {
      const { recovered, lastQueueId } = yield* Checkpoint.recover({
        spoolDirectory: config.spool.directory,
        logDirectory: config.log.directory,
        partition
      })
      return Queue.layer({
        spoolDirectory: config.spool.directory,
        partition,
        segmentSize: config.spool.segmentSize,
        maildirRoot: config.maildirRoot,
        hostname: config.hostname,
        localDomains: () => current.settings.localDomains,
        deliveryConcurrency: 16,
        retryBase: config.timeouts.deliveryRetry,
        recovered,
        lastQueueId,
        policy: livePolicy
      })
    })
  )

  yield* program.pipe(
    Effect.provide(Layer.merge(queueLayer.pipe(Layer.provideMerge(logLayer)), policyLayer)),
    Effect.scoped
  )
})
