/**
 * The certificate store: every configured certificate, checked and turned into a
 * `tls.SecureContext` once, chosen per handshake by the client's SNI.
 *
 * The contexts live in an immutable snapshot. `reload` builds a new one from the files and
 * swaps it in whole; a handshake already under way, and every open connection, keeps the
 * contexts it started with. Session ticket keys come from `TicketKeys` (the same in every
 * worker for a period); when the period changes the contexts are rebuilt from the PEM already
 * in memory, on the first call that notices.
 *
 * How Node's server `TLSSocket` chooses a certificate, and what that means here:
 * - `SNICallback` runs (on a bare `new tls.TLSSocket(socket, { isServer: true })` as on a
 *   `tls.Server`) only when the client sent a server name and the session is not resumed:
 *   OpenSSL skips its certificate callback for resumed sessions. A handshake without SNI is
 *   served by `secureContext`. `resolutionOf(socket)` gives the resolution for those cases.
 * - The context `SNICallback` returns lends only its certificate, key and chain: Node copies
 *   them into the connection, which keeps the initial context for everything else (versions,
 *   ciphers, groups, cipher order, client CA, ticket keys). Those are the server-wide settings;
 *   a domain can narrow the versions (checked in `SNICallback`, which fails the handshake for
 *   a version outside the domain's range) but not change its ciphers.
 * - When no certificate may be served by default (no default, or `requireSni`), a connection
 *   starts with a context without a certificate, so that a client without SNI or with an
 *   unknown name gets a handshake_failure alert (an error from `SNICallback` would close the
 *   connection without one).
 */
import * as Crypto from "node:crypto"
import * as NodeFs from "node:fs"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { Effect, Result, Semaphore } from "effect"
import * as Event from "../log/Event.ts"
import * as CertificateCheck from "./CertificateCheck.ts"
import * as ServerName from "./ServerName.ts"
import * as TicketKeys from "./TicketKeys.ts"
import type * as TlsSettings from "./TlsSettings.ts"
import { describe } from "../log/SystemError.ts"

/** Which certificate serves a handshake, and why. */
export interface Resolution {
  readonly context: Tls.SecureContext
  /** The certificate's name: its domain's first configured name, or "default". */
  readonly certificate: string
  readonly match: Event.CertificateMatch
  /** The settings of the domain (or the server's, for the default). */
  readonly protocol: TlsSettings.ProtocolSettings
}

/**
 * A handshake the store refused to serve. An unknown name fails with a handshake_failure
 * alert; a version the domain does not accept closes the connection without one.
 */
export interface Refusal {
  readonly servername: string
  readonly reason: Extract<Event.TlsFailure, "unknown-sni" | "protocol-version">
  readonly detail: string
}

/** What a reload did; `events` go to the event log. */
export interface ReloadReport {
  readonly events: ReadonlyArray<Event.Event>
  /** The certificates that failed their checks; the ones in service before stay. */
  readonly rejected: ReadonlyArray<CertificateCheck.CertificateError>
  /** Names of the certificates now served from new files. */
  readonly replaced: ReadonlyArray<string>
}

export interface CertStore {
  /**
   * The certificate for a client's SNI: an exact name, else a wildcard, else the default.
   * Undefined when none may be served: no match and no default, or `requireSni` and no match
   * (no SNI included).
   */
  readonly resolve: (servername: string | undefined) => Resolution | undefined
  /**
   * Options for `new tls.TLSSocket(socket, { isServer: true, ...options })` (also valid for
   * `tls.createServer`, which builds its own default context from the `cert`/`key` given here).
   * `onResolved` hears which certificate the client's SNI chose; `onRefused` hears why a
   * handshake was refused. Neither is called when the client sent no SNI or resumed a session
   * (no certificate is chosen then): ask `resolutionOf(socket)` once the handshake is done.
   */
  readonly serverOptions: (
    onResolved: (resolution: Resolution) => void,
    onRefused?: (refusal: Refusal) => void
  ) => Tls.TLSSocketOptions
  /**
   * The resolution for an established socket whose SNI callback did not run: by its server
   * name (a resumed TLS 1.3 session), else the default (no SNI). Undefined when that default is
   * not served (`requireSni`, no default) or the socket's name now matches nothing.
   */
  readonly resolutionOf: (socket: Tls.TLSSocket) => Resolution | undefined
  /** Re-reads every file; a certificate that fails its checks keeps the one in service. */
  readonly reload: Effect.Effect<ReloadReport>
  /**
   * Watches the directories of the certificate, key and CA files and reloads, `debounce` ms
   * after the last change, handing each report to `onReload`. Runs until interrupted.
   */
  readonly watch: (onReload: (report: ReloadReport) => Effect.Effect<void>) => Effect.Effect<never>
  /** The certificates in service: the default first (if any), then one per domain. */
  readonly certificates: () => ReadonlyArray<CertificateCheck.LoadedCertificate>
}

export interface CertStoreOptions {
  /** The ticket master secret shared by the workers (`TicketKeys.loadOrCreate`). */
  readonly ticketMaster: Uint8Array
  /** The clock, in ms since the epoch: validity checks, events, ticket periods. */
  readonly now: () => number
  /** Quiet time after a file change before `watch` reloads, in ms. Default 200. */
  readonly watchDebounce?: number
}

/** Identifies the sessions of this application: the same in every worker, so tickets resume anywhere. */
const sessionIdContext = "postern"

/**
 * OpenSSL options for every context: no renegotiation, no compression (CRIME), and none of
 * the protocols before TLS 1.2 even if a version setting said otherwise.
 */
export const secureOptions: number = Crypto.constants.SSL_OP_NO_RENEGOTIATION |
  Crypto.constants.SSL_OP_NO_COMPRESSION |
  Crypto.constants.SSL_OP_NO_SSLv2 |
  Crypto.constants.SSL_OP_NO_SSLv3 |
  Crypto.constants.SSL_OP_NO_TLSv1 |
  Crypto.constants.SSL_OP_NO_TLSv1_1

const versionRank = (version: string): number | undefined =>
  version === "TLSv1.2" ? 2 : version === "TLSv1.3" ? 3 : undefined

/** Where a certificate comes from in the settings, and what it must cover. */
interface Slot {
  readonly name: string
  readonly files: TlsSettings.CertificateFiles
  /** Configured names (none for the default). */
  readonly serves: ReadonlyArray<string>
  readonly protocol: TlsSettings.ProtocolSettings
  /** The domain allows fewer versions than the server: checked at SNI time. */
  readonly narrower: boolean
}

interface Served {
  readonly slot: Slot
  readonly loaded: CertificateCheck.LoadedCertificate
  readonly context: Tls.SecureContext
}

/** What is in service: the slots' certificates and contexts, the client CA, the ticket period. */
interface State {
  readonly period: number
  readonly ca: string | undefined
  readonly served: ReadonlyArray<Served>
}

/** Everything a handshake needs, derived from a `State` once. */
interface Snapshot {
  readonly state: State
  readonly exact: ReadonlyArray<Resolution>
  readonly wildcard: ReadonlyArray<Resolution>
  /** What a client without SNI (or with an unknown one) gets, unless refused. */
  readonly fallback: Resolution | undefined
  /** Resolutions of domains that accept fewer versions than the server. */
  readonly narrowed: ReadonlySet<Resolution>
  readonly base: Tls.TLSSocketOptions
}


/** `tls.createSecureContext` options shared by every context. */
const commonOptions = (
  protocol: TlsSettings.ProtocolSettings,
  settings: TlsSettings.TlsSettings,
  ca: string | undefined,
  ticketKey: Uint8Array
): Tls.SecureContextOptions => ({
  minVersion: protocol.minVersion,
  maxVersion: protocol.maxVersion,
  // Node takes the TLS 1.3 suites (the "TLS_" names) and the TLS 1.2 list in one string.
  ciphers: `${protocol.cipherSuites}:${protocol.ciphers}`,
  ecdhCurve: protocol.groups,
  honorCipherOrder: protocol.preferServerCiphers,
  secureOptions: protocol.preferServerCiphers
    ? secureOptions | Crypto.constants.SSL_OP_CIPHER_SERVER_PREFERENCE
    : secureOptions,
  sessionIdContext,
  sessionTimeout: Math.max(1, Math.floor(settings.sessionTickets.lifetime / 1000)),
  ticketKeys: Buffer.from(ticketKey),
  ...(ca === undefined ? {} : { ca })
})

const certificateOptions = (loaded: CertificateCheck.LoadedCertificate): Tls.SecureContextOptions => ({
  cert: loaded.pem.cert,
  key: loaded.pem.key,
  ...(loaded.files.passphrase === undefined ? {} : { passphrase: loaded.files.passphrase })
})

/** The slots of the settings: the default first, then each domain, named by its first name. */
const slotsOf = (settings: TlsSettings.TlsSettings): ReadonlyArray<Slot> => {
  const server = settings.protocol
  const narrower = (p: TlsSettings.ProtocolSettings) =>
    (versionRank(p.minVersion) ?? 0) > (versionRank(server.minVersion) ?? 0) ||
    (versionRank(p.maxVersion) ?? 0) < (versionRank(server.maxVersion) ?? 0)
  return [
    ...(settings.defaultCertificate === undefined
      ? []
      : [{ name: "default", files: settings.defaultCertificate, serves: [], protocol: server, narrower: false }]),
    ...settings.domains.map((d) => ({
      name: d.names[0] ?? "",
      files: d.files,
      serves: d.names,
      protocol: d.protocol,
      narrower: narrower(d.protocol)
    }))
  ]
}

const loadedEvent = (loaded: CertificateCheck.LoadedCertificate, at: number, reload: boolean): Event.Event =>
  Event.make("CertificateLoaded", {
    at,
    name: loaded.name,
    file: loaded.files.certificate,
    subject: loaded.subject,
    names: loaded.names,
    notAfter: loaded.notAfter,
    fingerprint256: loaded.fingerprint256,
    reload
  })

const expiringEvent = (loaded: CertificateCheck.LoadedCertificate, at: number): Event.Event =>
  Event.make("CertificateExpiring", { at, name: loaded.name, file: loaded.files.certificate, notAfter: loaded.notAfter })

const rejectedEvent = (name: string, error: CertificateCheck.CertificateError, at: number): Event.Event =>
  Event.make("CertificateRejected", { at, name, file: error.file, reason: error.reason })

const sameFiles = (a: CertificateCheck.LoadedCertificate, b: CertificateCheck.LoadedCertificate): boolean =>
  a.pem.cert === b.pem.cert && a.pem.key === b.pem.key && a.files.passphrase === b.files.passphrase

/**
 * Reads and checks every certificate of `settings` and builds the store. Fails with the first
 * certificate that cannot be served (unreadable, mismatched key, chain out of order, expired,
 * not covering its names), naming its file. `events` (loaded, expiring) go to the event log.
 */
export const make = (
  settings: TlsSettings.TlsSettings,
  options: CertStoreOptions
): Effect.Effect<{ readonly store: CertStore; readonly events: ReadonlyArray<Event.Event> }, CertificateCheck.CertificateError> =>
  Effect.gen(function*() {
    const slots = slotsOf(settings)
    const hasDefault = settings.defaultCertificate !== undefined
    const rotation = settings.sessionTickets.rotation
    const debounce = options.watchDebounce ?? 200
    const domainOffset = hasDefault ? 1 : 0
    const names = ServerName.index(
      settings.domains.flatMap((d, i) => d.names.map((name) => [name, i + domainOffset] as const))
    )
    const caFile = settings.clientCertificates.request ? settings.clientCertificates.ca : undefined
    const requestCert = settings.clientCertificates.request

    const checkOptions = (slot: Slot, now: number): CertificateCheck.CheckOptions => ({
      name: slot.name,
      serves: slot.serves,
      now,
      expiryWarning: settings.expiryWarning
    })

    const contextFor = (
      slot: Slot,
      loaded: CertificateCheck.LoadedCertificate,
      ca: string | undefined,
      ticketKey: Uint8Array
    ): Tls.SecureContext =>
      Tls.createSecureContext({ ...commonOptions(slot.protocol, settings, ca, ticketKey), ...certificateOptions(loaded) })

    const tryContext = (
      slot: Slot,
      loaded: CertificateCheck.LoadedCertificate,
      ca: string | undefined,
      ticketKey: Uint8Array
    ): Effect.Effect<Served, CertificateCheck.CertificateError> =>
      Effect.try({
        try: () => ({ slot, loaded, context: contextFor(slot, loaded, ca, ticketKey) }),
        catch: (error) =>
          new CertificateCheck.CertificateError({
            file: slot.files.certificate,
            reason: `cannot be served with the TLS settings: ${describe(error)}`
          })
      })

    const snapshotOf = (state: State): Snapshot => {
      const ticketKey = TicketKeys.keyFor(options.ticketMaster, state.period)
      const resolutions = (match: Event.CertificateMatch) =>
        state.served.map((s): Resolution => ({ context: s.context, certificate: s.loaded.name, match, protocol: s.slot.protocol }))
      const exact = resolutions("exact")
      const wildcard = resolutions("wildcard")
      const narrowed = new Set<Resolution>()
      state.served.forEach((s, i) => {
        if (!s.slot.narrower) return
        for (const r of [exact[i], wildcard[i]]) if (r !== undefined) narrowed.add(r)
      })
      const defaultServed = hasDefault ? state.served[0] : undefined
      const fallback = defaultServed === undefined || settings.requireSni
        ? undefined
        : { context: defaultServed.context, certificate: "default", match: "default" as const, protocol: settings.protocol }
      // Without a fallback the connection starts with no certificate, so that a handshake that
      // does not get one by SNI fails with an alert.
      const initial = fallback?.context ??
        Tls.createSecureContext(commonOptions(settings.protocol, settings, state.ca, ticketKey))
      const base: Tls.TLSSocketOptions = {
        ...commonOptions(settings.protocol, settings, state.ca, ticketKey),
        ...(fallback === undefined || defaultServed === undefined ? {} : certificateOptions(defaultServed.loaded)),
        secureContext: initial,
        requestCert,
        // A client certificate is reported with its verification status; policy decides.
        rejectUnauthorized: false
      }
      return { state, exact, wildcard, fallback, narrowed, base }
    }

    // ---- start: every certificate must load.
    const startedAt = options.now()
    const ca = caFile === undefined ? undefined : yield* CertificateCheck.loadAuthorities(caFile)
    const period = TicketKeys.periodIndex(startedAt, rotation)
    const startKey = TicketKeys.keyFor(options.ticketMaster, period)
    const served = yield* Effect.forEach(slots, (slot) =>
      CertificateCheck.load(slot.files, checkOptions(slot, startedAt)).pipe(
        Effect.flatMap((loaded) => tryContext(slot, loaded, ca, startKey))
      ))
    let snapshot = yield* Effect.try({
      try: () => snapshotOf({ period, ca, served }),
      catch: (error) =>
        new CertificateCheck.CertificateError({
          file: caFile ?? slots[0]?.files.certificate ?? "(tls settings)",
          reason: `cannot build a TLS context with the server's settings: ${describe(error)}`
        })
    })
    const startEvents = served.flatMap((s) => [
      loadedEvent(s.loaded, startedAt, false),
      ...(s.loaded.expiring ? [expiringEvent(s.loaded, startedAt)] : [])
    ])

    /** The snapshot in service, rebuilt first when the ticket period has changed. */
    const current = (): Snapshot => {
      const now = TicketKeys.periodIndex(options.now(), rotation)
      if (now === snapshot.state.period) return snapshot
      const key = TicketKeys.keyFor(options.ticketMaster, now)
      try {
        const rebuilt = snapshot.state.served.map((s) => ({
          ...s,
          context: contextFor(s.slot, s.loaded, snapshot.state.ca, key)
        }))
        snapshot = snapshotOf({ period: now, ca: snapshot.state.ca, served: rebuilt })
      } catch {
        // The same PEM and settings built these contexts before; should OpenSSL refuse now,
        // the old key keeps serving rather than failing handshakes.
        snapshot = { ...snapshot, state: { ...snapshot.state, period: now } }
      }
      return snapshot
    }

    const resolveIn = (snap: Snapshot, servername: string | undefined): Resolution | undefined => {
      if (servername !== undefined && servername !== "") {
        const found = ServerName.lookup(names, servername)
        if (found !== undefined) return (found.match === "exact" ? snap.exact : snap.wildcard)[found.entry]
      }
      return snap.fallback
    }

    const resolve = (servername: string | undefined) => resolveIn(current(), servername)

    const serverOptions = (
      onResolved: (resolution: Resolution) => void,
      onRefused?: (refusal: Refusal) => void
    ): Tls.TLSSocketOptions => {
      const snap = current()
      return {
        ...snap.base,
        // Node calls this as a method of the server TLSSocket, mid-handshake, after the version is chosen.
        SNICallback: function(this: unknown, servername, callback) {
          const resolution = resolveIn(snap, servername)
          if (resolution === undefined) {
            onRefused?.({ servername, reason: "unknown-sni", detail: `unrecognized name ${servername}` })
            // No fallback means the connection has no certificate: OpenSSL sends handshake_failure.
            return callback(null)
          }
          if (snap.narrowed.has(resolution) && this instanceof Tls.TLSSocket) {
            const version = this.getProtocol()
            const rank = version === null ? undefined : versionRank(version)
            const { minVersion, maxVersion } = resolution.protocol
            if (rank !== undefined && (rank < (versionRank(minVersion) ?? 0) || rank > (versionRank(maxVersion) ?? 9))) {
              const detail = `unsupported protocol: ${servername} accepts ${minVersion} to ${maxVersion}, the client negotiated ${version}`
              onRefused?.({ servername, reason: "protocol-version", detail })
              // The connection may already hold the default certificate, which a context without
              // one would not take away (Node copies only what a context has): fail it outright.
              return callback(new Error(detail))
            }
          }
          onResolved(resolution)
          callback(null, resolution.context)
        }
      }
    }

    const resolutionOf = (socket: Tls.TLSSocket): Resolution | undefined => {
      const name: unknown = Reflect.get(socket, "servername")
      return resolve(typeof name === "string" ? name : undefined)
    }

    // ---- reload
    const semaphore = Semaphore.makeUnsafe(1)

    const reloadCa = (at: number, events: Array<Event.Event>, rejected: Array<CertificateCheck.CertificateError>) =>
      caFile === undefined
        ? Effect.succeed(snapshot.state.ca)
        : CertificateCheck.loadAuthorities(caFile).pipe(
          Effect.catch((error) =>
            Effect.sync(() => {
              events.push(rejectedEvent("client-ca", error, at))
              rejected.push(error)
              return snapshot.state.ca
            })
          )
        )

    const reload: Effect.Effect<ReloadReport> = semaphore.withPermits(1)(Effect.gen(function*() {
      const at = options.now()
      const events: Array<Event.Event> = []
      const rejected: Array<CertificateCheck.CertificateError> = []
      const replaced: Array<string> = []
      const ca = yield* reloadCa(at, events, rejected)
      const before = snapshot.state
      const period = TicketKeys.periodIndex(at, rotation)
      const key = TicketKeys.keyFor(options.ticketMaster, period)
      const rebuildAll = ca !== before.ca || period !== before.period
      const next = yield* Effect.forEach(before.served, (old) =>
        Effect.gen(function*() {
          const slot = old.slot
          const attempt = yield* Effect.result(
            CertificateCheck.load(slot.files, checkOptions(slot, at)).pipe(
              Effect.flatMap((loaded) =>
                !rebuildAll && sameFiles(loaded, old.loaded)
                  ? Effect.succeed({ served: { ...old, loaded }, changed: false })
                  : tryContext(slot, loaded, ca, key).pipe(
                    Effect.map((s) => ({ served: s, changed: !sameFiles(loaded, old.loaded) }))
                  )
              )
            )
          )
          if (Result.isSuccess(attempt)) {
            if (attempt.success.changed) {
              replaced.push(slot.name)
              events.push(loadedEvent(attempt.success.served.loaded, at, true))
            }
            if (attempt.success.served.loaded.expiring) events.push(expiringEvent(attempt.success.served.loaded, at))
            return attempt.success.served
          }
          rejected.push(attempt.failure)
          events.push(rejectedEvent(slot.name, attempt.failure, at))
          if (!rebuildAll) return old
          // The old certificate stays, with the new CA or ticket key.
          const rebuilt = yield* Effect.result(tryContext(slot, old.loaded, ca, key))
          return Result.isSuccess(rebuilt) ? rebuilt.success : old
        }))
      snapshot = snapshotOf({ period, ca, served: next })
      return { events, rejected, replaced }
    }))

    // ---- watch
    const watched = new Set(
      [...slots.flatMap((s) => [s.files.certificate, s.files.key]), ...(caFile === undefined ? [] : [caFile])].map((f) =>
        Path.resolve(f)
      )
    )
    const directories = [...new Set([...watched].map((f) => Path.dirname(f)))]

    const watch = (onReload: (report: ReloadReport) => Effect.Effect<void>): Effect.Effect<never> => {
      let changes = 0
      let wake: (() => void) | undefined
      const changed = () => {
        changes++
        const w = wake
        wake = undefined
        w?.()
      }
      const nextChange = Effect.callback<void>((resume) => {
        if (changes > 0) return resume(Effect.void)
        wake = () => resume(Effect.void)
        return Effect.sync(() => {
          wake = undefined
        })
      })
      const quiet: Effect.Effect<void> = Effect.suspend(() => {
        const seen = changes
        return Effect.sleep(debounce).pipe(Effect.flatMap(() => (changes === seen ? Effect.void : quiet)))
      })
      const cycle = nextChange.pipe(
        Effect.andThen(quiet),
        Effect.andThen(Effect.sync(() => {
          changes = 0
        })),
        Effect.andThen(reload),
        Effect.flatMap(onReload)
      )
      const open = Effect.sync(() =>
        directories.flatMap((directory) => {
          try {
            const watcher = NodeFs.watch(directory, { persistent: false }, (_event, file) => {
              if (file === null || watched.has(Path.join(directory, file.toString()))) changed()
            })
            watcher.on("error", () => watcher.close())
            return [watcher]
          } catch {
            // A missing directory: its files failed to load at start, so nothing here was served.
            return []
          }
        })
      )
      return Effect.acquireUseRelease(
        open,
        () => Effect.forever(cycle),
        (watchers) => Effect.sync(() => watchers.forEach((w) => w.close()))
      )
    }

    const store: CertStore = {
      resolve,
      serverOptions,
      resolutionOf,
      reload,
      watch,
      certificates: () => snapshot.state.served.map((s) => s.loaded)
    }
    return { store, events: startEvents }
  })

/**
 * The client certificate of an established server socket, with OpenSSL's verification result
 * against the configured CA. Node sets `authorized` only on sockets a `tls.Server` created; on
 * a bare server `TLSSocket` the result is read from the socket's handle as Node itself does.
 */
export const clientCertificate = (socket: Tls.TLSSocket): Event.ClientCertificate | undefined => {
  const peer = socket.getPeerX509Certificate()
  if (peer === undefined) return undefined
  return {
    subject: peer.subject.split("\n").join(", "),
    fingerprint256: peer.fingerprint256,
    verified: socket.authorized || verifiedByOpenSsl(socket)
  }
}

const verifiedByOpenSsl = (socket: Tls.TLSSocket): boolean => {
  const handle: unknown = Reflect.get(socket, "_handle")
  if (typeof handle !== "object" || handle === null) return false
  const verifyError: unknown = Reflect.get(handle, "verifyError")
  if (typeof verifyError !== "function") return false
  const error: unknown = Reflect.apply(verifyError, handle, [])
  return error === null || error === undefined
}
