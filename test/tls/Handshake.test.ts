/**
 * The handshake's facts: cipher strength from the cipher's name, the Received header's TLS
 * comment, and `make` over real loopback handshakes through the session's Connection and the
 * certificate store (version, cipher, SNI, the certificate served and why, client certificates).
 */
import * as Fs from "node:fs/promises"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Cause, Effect, type Exit } from "effect"
import type * as Event from "../../src/log/Event.ts"
import type * as CertificateCheck from "../../src/tls/CertificateCheck.ts"
import * as CertStore from "../../src/tls/CertStore.ts"
import * as Connection from "../../src/tls/Connection.ts"
import * as Handshake from "../../src/tls/Handshake.ts"
import type * as HandshakeFailure from "../../src/tls/HandshakeFailure.ts"
import * as TlsSettings from "../../src/tls/TlsSettings.ts"
import * as Certificates from "../support/Certificates.ts"

describe("Handshake.cipherBits", () => {
  const cases: ReadonlyArray<readonly [string, number]> = [
    ["TLS_AES_256_GCM_SHA384", 256],
    ["TLS_AES_128_GCM_SHA256", 128],
    ["TLS_CHACHA20_POLY1305_SHA256", 256],
    ["TLS_AES_128_CCM_SHA256", 128],
    ["ECDHE-RSA-AES256-GCM-SHA384", 256],
    ["ECDHE-ECDSA-AES256-GCM-SHA384", 256],
    ["ECDHE-ECDSA-AES128-GCM-SHA256", 128],
    ["ECDHE-RSA-AES128-GCM-SHA256", 128],
    ["ECDHE-RSA-CHACHA20-POLY1305", 256],
    ["ECDHE-ECDSA-CHACHA20-POLY1305", 256],
    // The SHA-256 MAC is not the cipher's strength.
    ["ECDHE-RSA-AES128-SHA256", 128],
    ["ecdhe-rsa-aes256-gcm-sha384", 256],
    ["NULL-SHA", 0],
    ["", 0]
  ]
  for (const [cipher, bits] of cases) {
    it(`${cipher === "" ? "(empty)" : cipher}: ${bits}`, () => {
      assert.strictEqual(Handshake.cipherBits(cipher), bits)
    })
  }
})

const facts: Event.TlsFacts = {
  version: "TLSv1.3",
  cipher: "TLS_AES_256_GCM_SHA384",
  bits: 256,
  algorithmBits: 256,
  certificate: "default",
  match: "default",
  resumed: false
}

describe("Handshake.receivedComment", () => {
  it("is Postfix's smtpd_tls_received_header text", () => {
    assert.strictEqual(Handshake.receivedComment(facts), "using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
  })

  it("TLS 1.2 with a 128-bit cipher", () => {
    assert.strictEqual(
      Handshake.receivedComment({ ...facts, version: "TLSv1.2", cipher: "ECDHE-RSA-AES128-GCM-SHA256", bits: 128, algorithmBits: 128 }),
      "using TLSv1.2 with cipher ECDHE-RSA-AES128-GCM-SHA256 (128/128 bits)"
    )
  })

  it("says nothing of SNI, certificate, resumption or client certificate", () => {
    assert.strictEqual(
      Handshake.receivedComment({
        ...facts,
        sni: "mx.example.test",
        group: "X25519",
        certificate: "mx.example.test",
        match: "exact",
        resumed: true,
        clientCertificate: { subject: "CN=c", fingerprint256: "AB", verified: true }
      }),
      "using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
    )
  })
})

// ---------------------------------------------------------------------------------------------
// Real handshakes, with the certificate store the daemon uses

const hour = 3_600_000
let directory = ""
let pki: Certificates.Pki

beforeAll(async () => {
  directory = await Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-handshake-"))
  pki = await Certificates.makePki(Path.join(directory, "pki"), {
    leaves: [
      { name: "default", dns: ["default.example.test"] },
      { name: "mx", dns: ["mx.example.test"] },
      { name: "client", dns: ["client.example.test"], clientAuth: true }
    ]
  })
})

afterAll(async () => {
  await Fs.rm(directory, { recursive: true, force: true })
})

const filesOf = (leaf: Certificates.Leaf): TlsSettings.CertificateFiles => ({ certificate: leaf.certificateFile, key: leaf.keyFile })

const settingsOf = (overrides: Partial<TlsSettings.TlsSettings> = {}): TlsSettings.TlsSettings => ({
  defaultCertificate: filesOf(pki.leaf("default")),
  domains: [{ names: ["mx.example.test"], files: filesOf(pki.leaf("mx")), protocol: TlsSettings.defaultProtocol }],
  protocol: TlsSettings.defaultProtocol,
  requireSni: false,
  handshakeTimeout: 10_000,
  sessionTickets: { lifetime: 2 * hour, rotation: hour },
  clientCertificates: { request: false },
  expiryWarning: 0,
  ...overrides
})

const upgradeWith = (
  overrides: Partial<TlsSettings.TlsSettings> = {},
  timeout = 5_000
): Effect.Effect<Handshake.Upgrade, CertificateCheck.CertificateError> =>
  CertStore.make(settingsOf(overrides), { ticketMaster: new Uint8Array(32).fill(7), now: Date.now }).pipe(
    Effect.map(({ store }) => Handshake.make(() => store, { timeout }))
  )

interface Outcome {
  readonly result: Exit.Exit<Event.TlsFacts, HandshakeFailure.HandshakeFailure>
  readonly clientError: unknown
}

interface Peer {
  readonly stop: () => void
  readonly error: () => unknown
}

/**
 * Runs the upgrade on the server side of a loopback connection, through the session's
 * Connection, with `client` on the other side.
 */
const handshake = (upgrade: Handshake.Upgrade, client: (port: number) => Peer): Effect.Effect<Outcome> =>
  Effect.gen(function*() {
    const listener = Net.createServer()
    const accepted = new Promise<Net.Socket>((resolve) => listener.once("connection", resolve))
    const port = yield* Effect.promise(() =>
      new Promise<number>((resolve) =>
        listener.listen(0, "127.0.0.1", () => {
          const address = listener.address()
          resolve(typeof address === "object" && address !== null ? address.port : 0)
        })
      )
    )
    const peer = client(port)
    const raw = yield* Effect.promise(() => accepted)
    const connection = Connection.fromSocket(raw, { writeTimeout: 5_000 })
    const result = yield* Effect.exit(upgrade(connection))
    peer.stop()
    raw.destroy()
    listener.close()
    return { result, clientError: peer.error() }
  })

const tlsClient = (options: Tls.ConnectionOptions) => (port: number): Peer => {
  let error: unknown
  const socket = Tls.connect({ host: "127.0.0.1", port, ca: pki.ca.certificatePem, ...options })
  socket.on("error", (e) => (error = e))
  return { stop: () => socket.destroy(), error: () => error }
}

const succeeded = (outcome: Outcome): Event.TlsFacts => {
  if (outcome.result._tag === "Success") return outcome.result.value
  return assert.fail(`the handshake failed: ${String(outcome.result.cause)} (client: ${String(outcome.clientError)})`)
}

const failed = (outcome: Outcome): HandshakeFailure.HandshakeFailure => {
  if (outcome.result._tag === "Success") return assert.fail("the handshake succeeded")
  const error = Cause.findErrorOption(outcome.result.cause)
  if (error._tag === "None") return assert.fail(`the handshake died: ${String(outcome.result.cause)}`)
  return error.value
}

describe("Handshake.make over loopback", () => {
  it.live("TLS 1.3 with SNI: version, cipher, bits, the name and the exact certificate", () =>
    Effect.gen(function*() {
      const outcome = yield* handshake(
        yield* upgradeWith(),
        tlsClient({ servername: "mx.example.test", ciphers: "TLS_AES_256_GCM_SHA384" })
      )
      const facts = succeeded(outcome)
      // Node reports the key exchange group only on the client side; when the server learns it, it is X25519 here.
      const { group, ...rest } = facts
      if (group !== undefined) assert.strictEqual(group, "X25519")
      assert.deepStrictEqual(rest, {
        version: "TLSv1.3",
        cipher: "TLS_AES_256_GCM_SHA384",
        bits: 256,
        algorithmBits: 256,
        sni: "mx.example.test",
        certificate: "mx.example.test",
        match: "exact",
        resumed: false
      })
      assert.strictEqual(Handshake.receivedComment(facts), "using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)")
    }))

  it.live("TLS 1.2 with an ECDHE cipher of 128 bits", () =>
    Effect.gen(function*() {
      const outcome = yield* handshake(
        yield* upgradeWith(),
        tlsClient({ servername: "mx.example.test", maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256" })
      )
      const facts = succeeded(outcome)
      assert.strictEqual(facts.version, "TLSv1.2")
      assert.strictEqual(facts.cipher, "ECDHE-ECDSA-AES128-GCM-SHA256")
      assert.strictEqual(facts.bits, 128)
      assert.strictEqual(facts.algorithmBits, 128)
      assert.strictEqual(Handshake.receivedComment(facts), "using TLSv1.2 with cipher ECDHE-ECDSA-AES128-GCM-SHA256 (128/128 bits)")
    }))

  it.live("without SNI: no sni key, the default certificate, no client certificate", () =>
    Effect.gen(function*() {
      // A client connecting to an IP address sends no server name; Node runs no SNI callback.
      const outcome = yield* handshake(yield* upgradeWith(), tlsClient({ checkServerIdentity: () => undefined }))
      const facts = succeeded(outcome)
      assert.isFalse("sni" in facts)
      assert.strictEqual(facts.certificate, "default")
      assert.strictEqual(facts.match, "default")
      assert.isFalse("clientCertificate" in facts)
    }))

  it.live("an unknown name gets the default certificate, and the name is recorded", () =>
    Effect.gen(function*() {
      const outcome = yield* handshake(
        yield* upgradeWith(),
        tlsClient({ servername: "other.example.test", checkServerIdentity: () => undefined })
      )
      const facts = succeeded(outcome)
      assert.strictEqual(facts.sni, "other.example.test")
      assert.strictEqual(facts.certificate, "default")
      assert.strictEqual(facts.match, "default")
    }))

  it.live("requireSni: an unknown name fails with unknown-sni", () =>
    Effect.gen(function*() {
      const outcome = yield* handshake(
        yield* upgradeWith({ requireSni: true }),
        tlsClient({ servername: "other.example.test", checkServerIdentity: () => undefined })
      )
      assert.strictEqual(failed(outcome).reason, "unknown-sni")
    }))

  it.live("a requested client certificate: subject, SHA-256 fingerprint, verified", () =>
    Effect.gen(function*() {
      const client = pki.leaf("client")
      const outcome = yield* handshake(
        yield* upgradeWith({ clientCertificates: { request: true, ca: pki.ca.certificateFile } }),
        tlsClient({ servername: "mx.example.test", key: client.keyPem, cert: client.certificatePem })
      )
      assert.deepStrictEqual(succeeded(outcome).clientCertificate, {
        subject: "CN=client.example.test",
        fingerprint256: client.fingerprint256,
        verified: true
      })
    }))

  it.live("a client that sends nothing fails with timeout, within the limit", () =>
    Effect.gen(function*() {
      const started = Date.now()
      const outcome = yield* handshake(yield* upgradeWith({}, 300), (port) => {
        const socket = Net.connect({ host: "127.0.0.1", port })
        socket.on("error", () => {})
        return { stop: () => socket.destroy(), error: () => undefined }
      })
      assert.deepStrictEqual(failed(outcome), { reason: "timeout", detail: "no complete handshake within 300 ms" })
      assert.isBelow(Date.now() - started, 2_000)
    }))

  it.live("plaintext instead of a ClientHello fails with bad-record", () =>
    Effect.gen(function*() {
      const outcome = yield* handshake(yield* upgradeWith(), (port) => {
        const socket = Net.connect({ host: "127.0.0.1", port }, () => socket.write("NOOP\r\n"))
        socket.on("error", () => {})
        return { stop: () => socket.destroy(), error: () => undefined }
      })
      assert.strictEqual(failed(outcome).reason, "bad-record")
    }))
})
