/**
 * The certificate store over real loopback handshakes: a server upgrades each accepted socket
 * with `new tls.TLSSocket(socket, { isServer: true, ...store.serverOptions(...) })`, as the
 * session does after STARTTLS, and `node:tls` clients check what they were served.
 */
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect, Fiber } from "effect"
import type * as Event from "../../src/log/Event.ts"
import * as CertificateCheck from "../../src/tls/CertificateCheck.ts"
import * as CertStore from "../../src/tls/CertStore.ts"
import * as TlsSettings from "../../src/tls/TlsSettings.ts"
import * as Certificates from "../support/Certificates.ts"

const day = 86_400_000
const hour = 3_600_000
let directory = ""
let pki: Certificates.Pki
let otherPki: Certificates.Pki
const master = new Uint8Array(Crypto.randomBytes(32))

beforeAll(async () => {
  directory = await Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-certstore-"))
  pki = await Certificates.makePki(Path.join(directory, "pki"), {
    leaves: [
      { name: "default", dns: ["default.example.test"] },
      { name: "mx", dns: ["mx.example.test"], keyType: "rsa", keyFormat: "pkcs1" },
      { name: "mx-new", dns: ["mx.example.test"], keyType: "ecdsa", keyFormat: "sec1" },
      { name: "wild", dns: ["*.example.test"], keyFormat: "sec1", passphrase: "pw" },
      { name: "strict", dns: ["strict.example.test"] },
      { name: "soon", dns: ["soon.example.test"], notAfter: Certificates.daysFromNow(5) },
      { name: "expired", dns: ["mx.example.test"], notBefore: Certificates.daysFromNow(-9), notAfter: Certificates.daysFromNow(-1) },
      { name: "client", dns: ["client.example.test"], clientAuth: true }
    ]
  })
  otherPki = await Certificates.makePki(Path.join(directory, "other"), {
    leaves: [{ name: "client", dns: ["client.other.test"], clientAuth: true }]
  })
})

afterAll(async () => {
  await Fs.rm(directory, { recursive: true, force: true })
})

// ---------------------------------------------------------------------------------------------
// Settings

const filesOf = (leaf: Certificates.Leaf): TlsSettings.CertificateFiles => ({
  certificate: leaf.certificateFile,
  key: leaf.keyFile,
  ...(leaf.passphrase === undefined ? {} : { passphrase: leaf.passphrase })
})

const domain = (
  names: ReadonlyArray<string>,
  files: TlsSettings.CertificateFiles,
  protocol: Partial<TlsSettings.ProtocolSettings> = {}
): TlsSettings.DomainTls => ({ names, files, protocol: { ...TlsSettings.defaultProtocol, ...protocol } })

const settingsOf = (overrides: Partial<TlsSettings.TlsSettings> = {}): TlsSettings.TlsSettings => ({
  defaultCertificate: filesOf(pki.leaf("default")),
  domains: [
    domain(["mx.example.test"], filesOf(pki.leaf("mx"))),
    domain(["*.example.test"], filesOf(pki.leaf("wild"))),
    domain(["strict.example.test"], filesOf(pki.leaf("strict")), { minVersion: "TLSv1.3" })
  ],
  protocol: TlsSettings.defaultProtocol,
  requireSni: false,
  handshakeTimeout: 10_000,
  sessionTickets: { lifetime: 2 * hour, rotation: hour },
  clientCertificates: { request: false },
  expiryWarning: 14 * day,
  ...overrides
})

const makeStore = (settings: TlsSettings.TlsSettings, options: Partial<CertStore.CertStoreOptions> = {}) =>
  CertStore.make(settings, { ticketMaster: master, now: Date.now, watchDebounce: 100, ...options }).pipe(
    Effect.map(({ store }) => store)
  )

// ---------------------------------------------------------------------------------------------
// A server that upgrades accepted sockets in place, and a client

/** What the server saw of one connection. */
interface Accepted {
  readonly resolved: Array<CertStore.Resolution>
  readonly refused: Array<CertStore.Refusal>
  socket: Tls.TLSSocket | undefined
  error: Error | undefined
}

interface Server {
  readonly port: number
  readonly accepted: Array<Accepted>
  /** The certificate a connection was served: reported by SNI, else `resolutionOf`. */
  readonly servedBy: (accepted: Accepted) => CertStore.Resolution | undefined
}

/**
 * Listens on 127.0.0.1; each connection gets `serverOptions` from `store()` at accept time,
 * says "hello\n" once secure and echoes what it reads.
 */
const serve = (store: () => CertStore.CertStore) =>
  Effect.acquireRelease(
    Effect.promise(() =>
      new Promise<{ server: Net.Server; result: Server }>((resolve) => {
        const accepted: Array<Accepted> = []
        const sockets = new Set<Net.Socket>()
        const server = Net.createServer((raw) => {
          sockets.add(raw)
          raw.on("close", () => sockets.delete(raw))
          const record: Accepted = { resolved: [], refused: [], socket: undefined, error: undefined }
          accepted.push(record)
          const secure = new Tls.TLSSocket(raw, {
            isServer: true,
            ...store().serverOptions((r) => record.resolved.push(r), (r) => record.refused.push(r))
          })
          secure.on("secure", () => {
            record.socket = secure
            secure.write("hello\n")
          })
          secure.on("data", (chunk) => secure.write(chunk))
          secure.on("error", (error) => {
            record.error = error
          })
        })
        server.listen(0, "127.0.0.1", () => {
          const address = server.address()
          const port = typeof address === "object" && address !== null ? address.port : 0
          resolve({
            server: Object.assign(server, { destroyAll: () => sockets.forEach((s) => s.destroy()) }),
            result: {
              port,
              accepted,
              servedBy: (a) => a.resolved[0] ?? (a.socket === undefined ? undefined : store().resolutionOf(a.socket))
            }
          })
        })
      })
    ),
    ({ server }) =>
      Effect.promise(() =>
        new Promise<void>((resolve) => {
          Reflect.apply(Reflect.get(server, "destroyAll"), server, [])
          server.close(() => resolve())
        })
      )
  ).pipe(Effect.map(({ result }) => result))

interface Connected {
  readonly ok: true
  readonly subject: string
  readonly fingerprint256: string
  readonly protocol: string | null
  readonly reused: boolean
  readonly session: Buffer | undefined
  readonly socket: Tls.TLSSocket
}
interface Refused {
  readonly ok: false
  readonly error: string
}

/**
 * A client handshake against the test CA. Resolves once the server's "hello" arrived (and the
 * session ticket, if one comes); closes the connection unless `keepOpen`.
 */
const connect = (
  port: number,
  options: Tls.ConnectionOptions & { readonly keepOpen?: boolean } = {}
): Effect.Effect<Connected | Refused> =>
  Effect.promise(() =>
    new Promise<Connected | Refused>((resolve) => {
      const { keepOpen, ...tlsOptions } = options
      let session: Buffer | undefined
      let done = false
      const socket = Tls.connect({
        port,
        host: "127.0.0.1",
        ca: pki.ca.certificatePem,
        // The subject is checked by the tests; no-SNI connections have no name to check.
        checkServerIdentity: () => undefined,
        ...tlsOptions
      })
      const finish = (result: Connected | Refused) => {
        if (done) return
        done = true
        if (keepOpen !== true || !result.ok) socket.end()
        resolve(result)
      }
      socket.on("session", (s) => {
        session = s
      })
      let established: Omit<Connected, "session"> | undefined
      const settle = () => established !== undefined && finish({ ...established, session })
      socket.once("data", () => {
        // Read now: a Node client forgets the peer certificate once TLS 1.3 tickets arrive.
        const peer = socket.getPeerX509Certificate()
        established = {
          ok: true,
          subject: peer?.subject ?? "",
          fingerprint256: peer?.fingerprint256 ?? "",
          protocol: socket.getProtocol(),
          reused: socket.isSessionReused(),
          socket
        }
        // A TLS 1.3 ticket arrives right after the handshake; give it a moment if not yet here.
        setTimeout(settle, session === undefined ? 50 : 0)
      })
      socket.on("close", settle)
      socket.on("error", (error) => finish({ ok: false, error: error.message }))
      socket.on("close", () => finish({ ok: false, error: "closed" }))
    })
  )

const connected = (result: Connected | Refused): Connected => {
  if (!result.ok) return assert.fail(`the handshake failed: ${result.error}`)
  return result
}

const refused = (result: Connected | Refused): string => {
  if (result.ok) return assert.fail(`the handshake succeeded with ${result.subject}`)
  return result.error
}

/** The last connection the server accepted, once it is settled (secure or failed). */
const lastAccepted = (server: Server) =>
  Effect.gen(function*() {
    for (let i = 0; i < 100; i++) {
      const last = server.accepted[server.accepted.length - 1]
      if (last !== undefined && (last.socket !== undefined || last.error !== undefined)) return last
      yield* Effect.sleep(10)
    }
    return assert.fail("the server saw no settled connection")
  })

/** Waits until `predicate` holds, polling every 20 ms, for at most `millis`. */
const eventually = (predicate: () => boolean, millis = 5_000) =>
  Effect.gen(function*() {
    const until = Date.now() + millis
    while (!predicate()) {
      if (Date.now() > until) return assert.fail("timed out waiting")
      yield* Effect.sleep(20)
    }
  })

const copyFiles = (leaf: Certificates.Leaf, target: string) =>
  Effect.promise(async () => {
    await Fs.mkdir(target, { recursive: true })
    const files = { certificate: Path.join(target, "cert.pem"), key: Path.join(target, "key.pem") }
    await Fs.writeFile(files.certificate, leaf.certificatePem)
    await Fs.writeFile(files.key, leaf.keyPem)
    return files
  })

const tempDirectory = Effect.acquireRelease(
  Effect.promise(() => Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-certstore-case-"))),
  (d) => Effect.promise(() => Fs.rm(d, { recursive: true, force: true }))
)

const tags = (events: ReadonlyArray<Event.Event>) => events.map((e) => e._tag)

// ---------------------------------------------------------------------------------------------

describe("CertStore.make", () => {
  it.live("reports each certificate loaded, and the ones expiring soon", () =>
    Effect.gen(function*() {
      const settings = settingsOf({
        domains: [domain(["mx.example.test"], filesOf(pki.leaf("mx"))), domain(["soon.example.test"], filesOf(pki.leaf("soon")))]
      })
      const { store, events } = yield* CertStore.make(settings, { ticketMaster: master, now: Date.now })
      assert.deepStrictEqual(tags(events), ["CertificateLoaded", "CertificateLoaded", "CertificateLoaded", "CertificateExpiring"])
      const loaded = events.filter((e): e is Event.CertificateLoaded => e._tag === "CertificateLoaded")
      assert.deepStrictEqual(loaded.map((e) => e.name), ["default", "mx.example.test", "soon.example.test"])
      assert.deepStrictEqual(loaded.map((e) => e.reload), [false, false, false])
      assert.strictEqual(loaded[1]?.fingerprint256, pki.leaf("mx").fingerprint256)
      assert.strictEqual(loaded[1]?.file, pki.leaf("mx").certificateFile)
      assert.deepStrictEqual(loaded[1]?.names, ["mx.example.test"])
      const expiring = events.find((e): e is Event.CertificateExpiring => e._tag === "CertificateExpiring")
      assert.strictEqual(expiring?.name, "soon.example.test")
      assert.deepStrictEqual(store.certificates().map((c) => c.name), ["default", "mx.example.test", "soon.example.test"])
    }))

  it.live("fails at start on a default whose key does not match, naming the key file", () =>
    Effect.gen(function*() {
      const files = { certificate: pki.leaf("default").certificateFile, key: pki.leaf("strict").keyFile }
      const error = yield* Effect.flip(makeStore(settingsOf({ defaultCertificate: files })))
      assert.instanceOf(error, CertificateCheck.CertificateError)
      assert.strictEqual(error.file, files.key)
    }))

  it.live("fails at start on an expired domain certificate, naming its file", () =>
    Effect.gen(function*() {
      const leaf = pki.leaf("expired")
      const error = yield* Effect.flip(makeStore(settingsOf({ domains: [domain(["mx.example.test"], filesOf(leaf))] })))
      assert.strictEqual(error.file, leaf.certificateFile)
      assert.include(error.message, "expired")
    }))

  it.live("fails at start on a domain certificate that does not cover its names", () =>
    Effect.gen(function*() {
      const leaf = pki.leaf("mx")
      const error = yield* Effect.flip(
        makeStore(settingsOf({ domains: [domain(["mx.example.test", "smtp.example.test"], filesOf(leaf))] }))
      )
      assert.strictEqual(error.file, leaf.certificateFile)
      assert.include(error.reason, "smtp.example.test")
    }))
})

describe("CertStore.resolve", () => {
  it.live("exact beats wildcard, the default catches the rest, requireSni refuses it", () =>
    Effect.gen(function*() {
      const store = yield* makeStore(settingsOf())
      const pick = (name: string | undefined) => {
        const r = store.resolve(name)
        return r === undefined ? undefined : `${r.certificate}/${r.match}`
      }
      assert.strictEqual(pick("mx.example.test"), "mx.example.test/exact")
      assert.strictEqual(pick("MX.Example.Test."), "mx.example.test/exact")
      assert.strictEqual(pick("other.example.test"), "*.example.test/wildcard")
      assert.strictEqual(pick("a.b.example.test"), "default/default")
      assert.strictEqual(pick("127.0.0.1"), "default/default")
      assert.strictEqual(pick(undefined), "default/default")
      assert.strictEqual(store.resolve("strict.example.test")?.protocol.minVersion, "TLSv1.3")

      const strict = yield* makeStore(settingsOf({ requireSni: true }))
      assert.strictEqual(strict.resolve("mx.example.test")?.match, "exact")
      assert.isUndefined(strict.resolve("unknown.test"))
      assert.isUndefined(strict.resolve(undefined))

      const noDefault = yield* makeStore(settingsOf({ defaultCertificate: undefined }))
      assert.strictEqual(noDefault.resolve("a.example.test")?.match, "wildcard")
      assert.isUndefined(noDefault.resolve("unknown.test"))
      assert.isUndefined(noDefault.resolve(undefined))
    }))
})

describe("CertStore handshakes", () => {
  it.live("serves the exact, wildcard and default certificates and reports the choice", () =>
    Effect.gen(function*() {
      const store = yield* makeStore(settingsOf())
      const server = yield* serve(() => store)

      const exact = connected(yield* connect(server.port, { servername: "mx.example.test" }))
      assert.strictEqual(exact.subject, "CN=mx.example.test")
      const exactServed = (yield* lastAccepted(server)).resolved
      assert.deepStrictEqual(exactServed.map((r) => [r.certificate, r.match]), [["mx.example.test", "exact"]])

      const wildcard = connected(yield* connect(server.port, { servername: "relay.example.test" }))
      assert.strictEqual(wildcard.subject, "CN=*.example.test")
      assert.deepStrictEqual((yield* lastAccepted(server)).resolved.map((r) => r.match), ["wildcard"])

      const unknown = connected(yield* connect(server.port, { servername: "unknown.test" }))
      assert.strictEqual(unknown.subject, "CN=default.example.test")
      assert.deepStrictEqual((yield* lastAccepted(server)).resolved.map((r) => r.certificate), ["default"])

      // No SNI: Node does not call SNICallback, so nothing is reported; resolutionOf answers.
      const none = connected(yield* connect(server.port))
      assert.strictEqual(none.subject, "CN=default.example.test")
      const noneAccepted = yield* lastAccepted(server)
      assert.deepStrictEqual(noneAccepted.resolved, [])
      assert.strictEqual(server.servedBy(noneAccepted)?.match, "default")
    }))

  it.live("without a default, an unknown name or no SNI fails the handshake with an alert", () =>
    Effect.gen(function*() {
      const store = yield* makeStore(settingsOf({ defaultCertificate: undefined }))
      const server = yield* serve(() => store)
      const unknown = refused(yield* connect(server.port, { servername: "unknown.test" }))
      assert.include(unknown, "alert handshake failure")
      const accepted = yield* lastAccepted(server)
      assert.deepStrictEqual(accepted.refused.map((r) => [r.servername, r.reason]), [["unknown.test", "unknown-sni"]])
      assert.isDefined(accepted.error)

      assert.include(refused(yield* connect(server.port)), "alert handshake failure")
      assert.strictEqual(connected(yield* connect(server.port, { servername: "mx.example.test" })).subject, "CN=mx.example.test")
    }))

  it.live("requireSni: an unknown name or no SNI fails even with a default", () =>
    Effect.gen(function*() {
      const store = yield* makeStore(settingsOf({ requireSni: true }))
      const server = yield* serve(() => store)
      assert.include(refused(yield* connect(server.port, { servername: "unknown.test" })), "alert handshake failure")
      assert.include(refused(yield* connect(server.port)), "alert handshake failure")
      assert.strictEqual(connected(yield* connect(server.port, { servername: "a.example.test" })).subject, "CN=*.example.test")
    }))

  it.live("TLS 1.0 and 1.1 are refused; 1.2 and 1.3 are negotiated", () =>
    Effect.gen(function*() {
      const store = yield* makeStore(settingsOf())
      const server = yield* serve(() => store)
      for (const version of ["TLSv1", "TLSv1.1"] as const) {
        const error = refused(
          yield* connect(server.port, {
            servername: "mx.example.test",
            minVersion: version,
            maxVersion: version,
            // OpenSSL 3 only offers these old versions at security level 0.
            ciphers: "DEFAULT@SECLEVEL=0"
          })
        )
        assert.include(error, "protocol version")
      }
      for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
        const ok = connected(yield* connect(server.port, { servername: "mx.example.test", minVersion: version, maxVersion: version }))
        assert.strictEqual(ok.protocol, version)
      }
    }))

  it.live("a domain limited to TLS 1.3 refuses TLS 1.2 clients that name it, while the others may use 1.2", () =>
    Effect.gen(function*() {
      const store = yield* makeStore(settingsOf())
      const server = yield* serve(() => store)
      // Refused by closing: the connection already holds the default certificate by then.
      refused(yield* connect(server.port, { servername: "strict.example.test", maxVersion: "TLSv1.2" }))
      const accepted = yield* lastAccepted(server)
      assert.deepStrictEqual(accepted.refused.map((r) => r.reason), ["protocol-version"])
      assert.include(accepted.error?.message ?? "", "unsupported protocol")
      assert.strictEqual(
        connected(yield* connect(server.port, { servername: "strict.example.test" })).protocol,
        "TLSv1.3"
      )
      assert.strictEqual(
        connected(yield* connect(server.port, { servername: "mx.example.test", maxVersion: "TLSv1.2" })).protocol,
        "TLSv1.2"
      )
    }))

  it.live("the options also work for tls.createServer", () =>
    Effect.gen(function*() {
      const store = yield* makeStore(settingsOf())
      const reported: Array<string> = []
      const server = Tls.createServer(store.serverOptions((r) => reported.push(r.certificate)), (socket) => socket.end("hello\n"))
      yield* Effect.acquireRelease(
        Effect.promise(() => new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()))),
        () => Effect.promise(() => new Promise<void>((resolve) => server.close(() => resolve())))
      )
      const address = server.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      assert.strictEqual(connected(yield* connect(port, { servername: "mx.example.test" })).subject, "CN=mx.example.test")
      assert.strictEqual(connected(yield* connect(port)).subject, "CN=default.example.test")
      assert.deepStrictEqual(reported, ["mx.example.test"])
    }))

  it.live("client certificates are requested and their verification against the CA reported", () =>
    Effect.gen(function*() {
      const store = yield* makeStore(settingsOf({ clientCertificates: { request: true, ca: pki.ca.certificateFile } }))
      const server = yield* serve(() => store)
      const ours = pki.leaf("client")
      const theirs = otherPki.leaf("client")
      for (const servername of ["mx.example.test", undefined]) {
        const sni = servername === undefined ? {} : { servername }
        connected(yield* connect(server.port, { ...sni, cert: ours.certificatePem, key: ours.keyPem }))
        const good = yield* lastAccepted(server)
        assert.deepStrictEqual(good.socket && CertStore.clientCertificate(good.socket), {
          subject: "CN=client.example.test",
          fingerprint256: ours.fingerprint256,
          verified: true
        })
        connected(yield* connect(server.port, { ...sni, cert: theirs.certificatePem, key: theirs.keyPem }))
        const bad = yield* lastAccepted(server)
        assert.strictEqual(bad.socket && CertStore.clientCertificate(bad.socket)?.verified, false)
        connected(yield* connect(server.port, sni))
        const none = yield* lastAccepted(server)
        assert.isUndefined(none.socket && CertStore.clientCertificate(none.socket))
      }
    }))
})

describe("CertStore session resumption", () => {
  for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
    it.live(`${version}: a ticket from one store resumes on another built from the same master, not on a foreign one`, () =>
      Effect.gen(function*() {
        const first = yield* makeStore(settingsOf())
        const second = yield* makeStore(settingsOf())
        const foreign = yield* makeStore(settingsOf(), { ticketMaster: new Uint8Array(Crypto.randomBytes(32)) })
        const a = yield* serve(() => first)
        const b = yield* serve(() => second)
        const c = yield* serve(() => foreign)
        const options = { servername: "mx.example.test", maxVersion: version, minVersion: version }
        const initial = connected(yield* connect(a.port, options))
        assert.isFalse(initial.reused)
        assert.isDefined(initial.session)
        const session = initial.session ?? Buffer.alloc(0)

        const resumed = connected(yield* connect(b.port, { ...options, session }))
        assert.isTrue(resumed.reused)
        assert.strictEqual(resumed.protocol, version)
        // No certificate is chosen on resumption; resolutionOf still names it by SNI (TLS 1.3 keeps it).
        const accepted = yield* lastAccepted(b)
        assert.deepStrictEqual(accepted.resolved, [])
        if (version === "TLSv1.3") assert.strictEqual(b.servedBy(accepted)?.certificate, "mx.example.test")

        assert.isFalse(connected(yield* connect(c.port, { ...options, session })).reused)
      }))
  }

  it.live("the ticket key rotates with the period: an old period's ticket no longer resumes", () =>
    Effect.gen(function*() {
      let clock = Date.now()
      const store = yield* makeStore(settingsOf(), { now: () => clock })
      const server = yield* serve(() => store)
      const options = { servername: "mx.example.test" }
      const initial = connected(yield* connect(server.port, options))
      const session = initial.session ?? Buffer.alloc(0)
      assert.isTrue(connected(yield* connect(server.port, { ...options, session })).reused)
      clock += hour
      const after = connected(yield* connect(server.port, { ...options, session }))
      assert.isFalse(after.reused)
      assert.strictEqual(after.subject, "CN=mx.example.test")
      // And a ticket of the new period resumes again.
      assert.isTrue(connected(yield* connect(server.port, { ...options, session: after.session ?? Buffer.alloc(0) })).reused)
    }))
})

describe("CertStore.reload", () => {
  it.live("new files serve new connections while an open connection keeps working", () =>
    Effect.gen(function*() {
      const work = yield* tempDirectory
      const files = yield* copyFiles(pki.leaf("mx"), work)
      const store = yield* makeStore(settingsOf({ domains: [domain(["mx.example.test"], files)] }))
      const server = yield* serve(() => store)
      const open = connected(yield* connect(server.port, { servername: "mx.example.test", keepOpen: true }))
      assert.strictEqual(open.fingerprint256, pki.leaf("mx").fingerprint256)

      const unchanged = yield* store.reload
      assert.deepStrictEqual(unchanged.replaced, [])
      assert.deepStrictEqual(unchanged.events, [])

      yield* copyFiles(pki.leaf("mx-new"), work)
      const report = yield* store.reload
      assert.deepStrictEqual(report.replaced, ["mx.example.test"])
      assert.deepStrictEqual(report.rejected, [])
      assert.deepStrictEqual(tags(report.events), ["CertificateLoaded"])
      const event = report.events[0]
      assert.isTrue(event?._tag === "CertificateLoaded" && event.reload)

      const fresh = connected(yield* connect(server.port, { servername: "mx.example.test" }))
      assert.strictEqual(fresh.fingerprint256, pki.leaf("mx-new").fingerprint256)

      // The connection opened before the reload still carries data.
      const echoed = yield* Effect.promise(() =>
        new Promise<string>((resolve) => {
          open.socket.once("data", (chunk) => resolve(chunk.toString()))
          open.socket.write("ping\n")
        })
      )
      assert.strictEqual(echoed, "ping\n")
      open.socket.end()
    }))

  it.live("a broken file keeps the certificate in service and is reported", () =>
    Effect.gen(function*() {
      const work = yield* tempDirectory
      const files = yield* copyFiles(pki.leaf("mx"), work)
      const store = yield* makeStore(settingsOf({ domains: [domain(["mx.example.test"], files)] }))
      const server = yield* serve(() => store)

      // A key that belongs to another certificate.
      yield* Effect.promise(() => Fs.writeFile(files.key, pki.leaf("mx-new").keyPem))
      const mismatched = yield* store.reload
      assert.deepStrictEqual(mismatched.replaced, [])
      assert.strictEqual(mismatched.rejected.length, 1)
      assert.strictEqual(mismatched.rejected[0]?.file, files.key)
      assert.deepStrictEqual(tags(mismatched.events), ["CertificateRejected"])
      const rejected = mismatched.events[0]
      assert.isTrue(rejected?._tag === "CertificateRejected" && rejected.name === "mx.example.test" && rejected.file === files.key)
      const served = connected(yield* connect(server.port, { servername: "mx.example.test" }))
      assert.strictEqual(served.fingerprint256, pki.leaf("mx").fingerprint256)

      // An expired certificate (with its own key).
      yield* copyFiles(pki.leaf("expired"), work)
      const expired = yield* store.reload
      assert.include(expired.rejected[0]?.reason ?? "", "expired")
      assert.strictEqual(
        connected(yield* connect(server.port, { servername: "mx.example.test" })).fingerprint256,
        pki.leaf("mx").fingerprint256
      )
      assert.strictEqual(store.certificates()[1]?.fingerprint256, pki.leaf("mx").fingerprint256)
    }))

  it.live("watch reloads when a file changes", () =>
    Effect.gen(function*() {
      const work = yield* tempDirectory
      const files = yield* copyFiles(pki.leaf("mx"), work)
      const store = yield* makeStore(settingsOf({ domains: [domain(["mx.example.test"], files)] }))
      const server = yield* serve(() => store)
      const reports: Array<CertStore.ReloadReport> = []
      const watcher = yield* Effect.forkChild(store.watch((report) => Effect.sync(() => reports.push(report))))
      yield* Effect.sleep(50)

      // Unrelated files in the same directory do not trigger a reload.
      yield* Effect.promise(() => Fs.writeFile(Path.join(work, "notes.txt"), "x"))
      yield* Effect.sleep(300)
      assert.strictEqual(reports.length, 0)

      yield* copyFiles(pki.leaf("mx-new"), work)
      yield* eventually(() => reports.some((r) => r.replaced.includes("mx.example.test")))
      // The two writes (certificate, then key) came within the quiet time: one reload.
      assert.strictEqual(reports.length, 1)
      assert.strictEqual(
        connected(yield* connect(server.port, { servername: "mx.example.test" })).fingerprint256,
        pki.leaf("mx-new").fingerprint256
      )
      yield* Fiber.interrupt(watcher)
    }))
})
