/**
 * Certificates changing under a running daemon (issue 3, "Certificates"): files replaced on
 * disk are served to new connections without a restart while open connections keep theirs; a
 * broken file (here: a key that does not match its certificate) is refused on SIGHUP and the
 * certificate in service stays; a certificate close to expiry is reported at start.
 */
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Schema } from "effect"
import type * as Event from "../../src/log/Event.ts"
import * as Certificates from "../support/Certificates.ts"
import { assertStillDelivers, type Daemon, sleep, startDaemon, uniqueToken, waitForMail } from "../support/Daemon.ts"

/** A TLS client step failed or an expected state did not come in time. */
class ReloadTestError extends Schema.TaggedError<ReloadTestError>()("ReloadTestError", {
  message: Schema.String
}) {}

type Tagged<T extends Event.Event["_tag"]> = Extract<Event.Event, { readonly _tag: T }>

const ofTag = <T extends Event.Event["_tag"]>(events: ReadonlyArray<Event.Event>, tag: T): Array<Tagged<T>> =>
  events.filter((e): e is Tagged<T> => e._tag === tag)

/** Polls an asynchronous check until it gives a value, or fails after `timeout` ms. */
const until = async <A>(what: string, check: () => Promise<A | undefined>, timeout = 10_000): Promise<A> => {
  const deadline = Date.now() + timeout
  while (true) {
    const value = await check()
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new ReloadTestError({ message: `timed out after ${timeout} ms waiting for ${what}` })
    await sleep(100)
  }
}

interface Reply {
  readonly code: number
  readonly raw: string
}

/** An SMTP client over implicit TLS that verifies the server against the test CA. */
class TlsClient {
  readonly socket: Tls.TLSSocket
  #buffer = ""
  #closed = false
  #wake: (() => void) | undefined

  private constructor(socket: Tls.TLSSocket) {
    this.socket = socket
    socket.setEncoding("utf8")
    socket.on("data", (chunk: string) => {
      this.#buffer += chunk
      this.#notify()
    })
    const closed = () => {
      this.#closed = true
      this.#notify()
    }
    socket.on("close", closed)
    socket.on("error", closed)
  }

  static connect(port: number, servername: string, ca: string): Promise<TlsClient> {
    return new Promise((resolve, reject) => {
      const socket = Tls.connect({ port, host: "127.0.0.1", servername, ca })
      const onError = (error: Error) => reject(new ReloadTestError({ message: `TLS to ${servername}: ${error.message}` }))
      socket.once("error", onError)
      socket.once("secureConnect", () => {
        socket.off("error", onError)
        resolve(new TlsClient(socket))
      })
    })
  }

  /** SHA-256 fingerprint of the certificate the server presented on this connection. */
  get fingerprint(): string {
    return this.socket.getPeerX509Certificate()?.fingerprint256 ?? ""
  }

  async readReply(timeout = 5000): Promise<Reply> {
    const deadline = Date.now() + timeout
    while (true) {
      const match = /^(?:\d{3}-[^\r\n]*\r\n)*(\d{3}) [^\r\n]*\r\n/.exec(this.#buffer)
      if (match !== null) {
        this.#buffer = this.#buffer.slice(match[0].length)
        return { code: Number(match[1]), raw: match[0] }
      }
      if (this.#closed) throw new ReloadTestError({ message: `closed before a reply; unread: ${JSON.stringify(this.#buffer)}` })
      const left = deadline - Date.now()
      if (left <= 0) throw new ReloadTestError({ message: `no reply within ${timeout} ms; unread: ${JSON.stringify(this.#buffer)}` })
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left)
        this.#wake = () => {
          clearTimeout(timer)
          resolve()
        }
      })
    }
  }

  async request(line: string): Promise<Reply> {
    this.socket.write(`${line}\r\n`)
    return this.readReply()
  }

  destroy(): void {
    this.socket.destroy()
  }

  #notify(): void {
    const wake = this.#wake
    this.#wake = undefined
    wake?.()
  }
}

const expectCode = (reply: Reply, code: number) => assert.strictEqual(reply.code, code, reply.raw)

describe("TLS certificates: reload on file change and on SIGHUP, expiry warnings", () => {
  let daemon: Daemon
  let directory = ""
  let pki: Certificates.Pki
  let implicitPort = 0

  /** The fingerprint a new connection is served for `servername`, verified against the test CA. */
  const served = async (servername: string): Promise<string> => {
    const client = await TlsClient.connect(implicitPort, servername, pki.ca.certificatePem)
    try {
      return client.fingerprint
    } finally {
      client.destroy()
    }
  }

  beforeAll(async () => {
    directory = Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-tls-reload-"))
    pki = await Certificates.makePki(Path.join(directory, "pki"), {
      leaves: [
        { name: "default", dns: ["mx.postern.test"] },
        { name: "reload", dns: ["reload.example.test"] },
        { name: "soon", dns: ["soon.example.test"], keyType: "rsa", notAfter: Certificates.daysFromNow(5) },
        { name: "other", dns: ["other.example.test"] }
      ]
    })
    const files = (name: string) => ({ certificate: pki.leaf(name).certificateFile, key: pki.leaf(name).keyFile })
    daemon = await startDaemon({
      tls: {
        ...files("default"),
        domains: [
          { names: ["reload.example.test"], ...files("reload") },
          { names: ["soon.example.test"], ...files("soon") }
        ]
      },
      extraListeners: [{ role: "submissions" }]
    })
    implicitPort = daemon.ports.extra[0] ?? 0
  })

  afterAll(async () => {
    await daemon?.dispose()
    if (directory !== "") Fs.rmSync(directory, { recursive: true, force: true })
  })

  it("a certificate expiring in 5 days is served, with one CertificateExpiring event at start and none for the others", async () => {
    const soon = pki.leaf("soon")
    const events = await daemon.readLog()
    const expiring = ofTag(events, "CertificateExpiring")
    assert.deepStrictEqual(expiring.map((e) => [e.name, e.file]), [["soon.example.test", soon.certificateFile]])
    // X.509 keeps whole seconds.
    assert.approximately(expiring[0]?.notAfter ?? 0, soon.notAfter.getTime(), 1000)
    const loaded = ofTag(events, "CertificateLoaded").filter((e) => e.name === "soon.example.test")
    assert.deepStrictEqual(loaded.map((e) => [e.fingerprint256, e.reload]), [[soon.fingerprint256, false]])
    assert.strictEqual(await served("soon.example.test"), soon.fingerprint256)
  })

  it("new files for reload.example.test: new connections get them without a restart; an open connection still delivers", async () => {
    const before = pki.leaf("reload").fingerprint256
    const open = await TlsClient.connect(implicitPort, "reload.example.test", pki.ca.certificatePem)
    try {
      assert.strictEqual(open.fingerprint, before)
      expectCode(await open.readReply(), 220)
      expectCode(await open.request("EHLO client.test"), 250)

      const since = Date.now()
      const renewed = await pki.issue({ name: "reload", dns: ["reload.example.test"], keyType: "rsa" })
      assert.notStrictEqual(renewed.fingerprint256, before)
      await until("the renewed certificate to be served", async () =>
        (await served("reload.example.test")) === renewed.fingerprint256 ? true : undefined)
      const reloaded = ofTag(await daemon.readLog(), "CertificateLoaded").filter((e) => e.at >= since)
      assert.deepStrictEqual(
        reloaded.map((e) => [e.name, e.fingerprint256, e.reload]),
        [["reload.example.test", renewed.fingerprint256, true]]
      )

      // The connection made before the reload goes on with the certificate it was given.
      const token = uniqueToken("reload-open")
      expectCode(await open.request("MAIL FROM:<sender@client.test>"), 250)
      expectCode(await open.request("RCPT TO:<alice@example.test>"), 250)
      expectCode(await open.request("DATA"), 354)
      expectCode(await open.request(`Subject: ${token}\r\n\r\n${token}\r\n.`), 250)
      expectCode(await open.request("QUIT"), 221)
      await waitForMail(daemon, "example.test", "alice", token)
    } finally {
      open.destroy()
    }
  })

  it("SIGHUP with a key that does not match its certificate: CertificateRejected names the key file, the old one stays", async () => {
    const inService = await served("reload.example.test")
    const keyFile = pki.leaf("reload").keyFile
    const goodKey = Fs.readFileSync(keyFile)
    const mismatch = (since: number) => async () =>
      ofTag(await daemon.readLog(), "CertificateRejected").find((e) =>
        e.at >= since && e.name === "reload.example.test" && e.file === keyFile && /does not match the certificate/.test(e.reason)
      )
    try {
      const written = Date.now()
      Fs.writeFileSync(keyFile, pki.leaf("other").keyPem)
      // The file watch refuses it first; SIGHUP must re-read and refuse it again.
      await until("the file watch to refuse the mismatched key", mismatch(written))
      await sleep(500)
      const hangup = Date.now()
      process.kill(daemon.pid(), "SIGHUP")
      const rejected = await until("SIGHUP to refuse the mismatched key", mismatch(hangup))
      assert.include(rejected.reason, pki.leaf("reload").certificateFile)
      assert.strictEqual(await served("reload.example.test"), inService)
      assert.deepStrictEqual(
        ofTag(await daemon.readLog(), "CertificateLoaded").filter((e) => e.at >= written),
        [],
        "nothing was loaded in place of the certificate in service"
      )
    } finally {
      Fs.writeFileSync(keyFile, goodKey)
    }
    await assertStillDelivers(daemon)
  })

  it("postern replay --verify reproduces every session of this daemon", async () => {
    const result = await daemon.replay([daemon.logDir, "--verify"])
    assert.strictEqual(result.code, 0, result.stdout + result.stderr)
    assert.match(result.stdout, /verified \d+ sessions, \d+ replies: all identical/)
  })
})
