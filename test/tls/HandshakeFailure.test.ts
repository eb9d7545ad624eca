/**
 * Classification of failed handshakes: the codes and messages Node and OpenSSL really give
 * (copied from server-side errors of Node 24 with OpenSSL 3.5), then the same failures
 * provoked over loopback, classified from what the server socket reports.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs/promises"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Tls from "node:tls"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { Effect } from "effect"
import type * as Event from "../../src/log/Event.ts"
import * as HandshakeFailure from "../../src/tls/HandshakeFailure.ts"
import * as Certificates from "../support/Certificates.ts"

/** An error as Node raises it: an Error with OpenSSL's `code` (and `reason`). */
const sslError = (code: string | undefined, message: string): Error => {
  const error = new Error(message)
  if (code !== undefined) Object.assign(error, { code })
  return error
}

const opensslMessage = (id: string, where: string, reason: string, file: string): string =>
  `40AD1F60D67F0000:error:${id}:SSL routines:${where}:${reason}:../deps/openssl/openssl/ssl/${file}\n`

describe("HandshakeFailure.classify: errors as Node reports them", () => {
  const cases: ReadonlyArray<readonly [string, unknown, Event.TlsFailure]> = [
    [
      "ERR_SSL_UNSUPPORTED_PROTOCOL (a TLS 1.1 client against TLS 1.2 minimum)",
      sslError(
        "ERR_SSL_UNSUPPORTED_PROTOCOL",
        opensslMessage("0A000102", "tls_early_post_process_client_hello", "unsupported protocol", "statem/statem_srvr.c:1780:")
      ),
      "protocol-version"
    ],
    ["ERR_SSL_VERSION_TOO_LOW", sslError("ERR_SSL_VERSION_TOO_LOW", "version too low"), "protocol-version"],
    ["ERR_SSL_NO_PROTOCOLS_AVAILABLE", sslError("ERR_SSL_NO_PROTOCOLS_AVAILABLE", "no protocols available"), "protocol-version"],
    [
      "ERR_SSL_NO_SHARED_CIPHER",
      sslError(
        "ERR_SSL_NO_SHARED_CIPHER",
        opensslMessage("0A0000C1", "tls_post_process_client_hello", "no shared cipher", "statem/statem_srvr.c:2361:")
      ),
      "no-shared-cipher"
    ],
    [
      "ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM",
      sslError(
        "ERR_SSL_NO_SUITABLE_SIGNATURE_ALGORITHM",
        opensslMessage("0A000076", "tls_choose_sigalg", "no suitable signature algorithm", "t1_lib.c:4607:")
      ),
      "no-shared-cipher"
    ],
    [
      "ERR_SSL_WRONG_VERSION_NUMBER (plaintext on a TLS socket)",
      sslError(
        "ERR_SSL_WRONG_VERSION_NUMBER",
        opensslMessage("0A00010B", "tls_validate_record_header", "wrong version number", "record/methods/tlsany_meth.c:77:")
      ),
      "bad-record"
    ],
    ["\"wrong version number\" without a code", sslError(undefined, "wrong version number"), "bad-record"],
    [
      "ERR_SSL_HTTP_REQUEST",
      sslError(
        "ERR_SSL_HTTP_REQUEST",
        opensslMessage("0A00009C", "tls_validate_record_header", "http request", "record/methods/tlsany_meth.c:68:")
      ),
      "bad-record"
    ],
    ["ERR_SSL_PACKET_LENGTH_TOO_LONG", sslError("ERR_SSL_PACKET_LENGTH_TOO_LONG", "packet length too long"), "bad-record"],
    [
      "ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC",
      sslError("ERR_SSL_DECRYPTION_FAILED_OR_BAD_RECORD_MAC", "decryption failed or bad record mac"),
      "bad-record"
    ],
    [
      "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA (the client does not trust the certificate)",
      sslError(
        "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA",
        opensslMessage("0A000418", "ssl3_read_bytes", "tlsv1 alert unknown ca", "record/rec_layer_s3.c:918:SSL alert number 48")
      ),
      "client-alert"
    ],
    [
      "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE (an alert, not a bad record)",
      sslError(
        "ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE",
        opensslMessage("0A000412", "ssl3_read_bytes", "sslv3 alert bad certificate", "record/rec_layer_s3.c:918:SSL alert number 42")
      ),
      "client-alert"
    ],
    [
      "ERR_SSL_TLSV1_UNRECOGNIZED_NAME",
      sslError("ERR_SSL_TLSV1_UNRECOGNIZED_NAME", "tlsv1 unrecognized name"),
      "unknown-sni"
    ],
    ["ECONNRESET", sslError("ECONNRESET", "read ECONNRESET"), "peer-closed"],
    ["EPIPE", sslError("EPIPE", "write EPIPE"), "peer-closed"],
    ["socket hang up", sslError("ECONNRESET", "socket hang up"), "peer-closed"],
    ["an unknown OpenSSL error", sslError("ERR_SSL_INTERNAL_ERROR", "internal error"), "other"],
    ["an error from an SNI callback", sslError(undefined, "no certificate for this name"), "other"],
    ["not an Error at all", 42, "other"],
    ["a string", "something odd", "other"],
    ["null", null, "other"]
  ]
  for (const [name, error, reason] of cases) {
    it(`${name} → ${reason}`, () => {
      assert.strictEqual(HandshakeFailure.classify(error).reason, reason)
    })
  }

  it("the detail is the code and OpenSSL's message", () => {
    assert.deepStrictEqual(
      HandshakeFailure.classify(sslError("ERR_SSL_NO_SHARED_CIPHER", "no shared cipher")),
      { reason: "no-shared-cipher", detail: "ERR_SSL_NO_SHARED_CIPHER: no shared cipher" }
    )
    assert.deepStrictEqual(HandshakeFailure.classify(sslError(undefined, "odd")), { reason: "other", detail: "odd" })
    assert.deepStrictEqual(HandshakeFailure.classify("odd"), { reason: "other", detail: "odd" })
  })

  it("the detail is cut at 300 characters", () => {
    const failure = HandshakeFailure.classify(sslError("ERR_SSL_HTTP_REQUEST", "x".repeat(1000)))
    assert.strictEqual(failure.reason, "bad-record")
    assert.strictEqual(failure.detail.length, 300)
    assert.isTrue(failure.detail.startsWith("ERR_SSL_HTTP_REQUEST: xxx"))
  })

  it("timedOut and peerClosed", () => {
    assert.deepStrictEqual(HandshakeFailure.timedOut(10_000), { reason: "timeout", detail: "no complete handshake within 10000 ms" })
    assert.strictEqual(HandshakeFailure.peerClosed.reason, "peer-closed")
  })
})

// ---------------------------------------------------------------------------------------------
// Real failures over loopback

let directory = ""
let pki: Certificates.Pki
let otherPki: Certificates.Pki

beforeAll(async () => {
  directory = await Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-handshake-failure-"))
  pki = await Certificates.makePki(Path.join(directory, "pki"), { leaves: [{ name: "mx", dns: ["mx.example.test"] }] })
  otherPki = await Certificates.makePki(Path.join(directory, "other"))
})

afterAll(async () => {
  await Fs.rm(directory, { recursive: true, force: true })
})

/** Something the client side started that must be stopped once the server has its answer. */
type Stop = () => void

/**
 * Accepts one loopback connection and runs the server side of a handshake on it the way the
 * session's Connection does (a bare `TLSSocket` in server mode, TLS 1.2 minimum); resolves
 * with the error the server socket reports, and fails if the handshake succeeds.
 */
const serverError = (serverOptions: Tls.TLSSocketOptions, client: (port: number) => Stop): Promise<unknown> =>
  new Promise((resolve, reject) => {
    let stop: Stop = () => {}
    const sockets: Array<Net.Socket> = []
    const listener = Net.createServer((raw) => {
      raw.on("error", () => {})
      const secure = new Tls.TLSSocket(raw, {
        key: pki.leaf("mx").keyPem,
        cert: pki.leaf("mx").certificatePem,
        minVersion: "TLSv1.2",
        ...serverOptions,
        isServer: true
      })
      sockets.push(raw, secure)
      secure.on("error", (error) => finish(() => resolve(error)))
      secure.on("_tlsError", (error: unknown) => finish(() => resolve(error)))
      secure.on("secure", () => finish(() => reject(new Error("the handshake succeeded"))))
    })
    const timer = setTimeout(() => finish(() => reject(new Error("no handshake error within 10 s"))), 10_000)
    let finished = false
    const finish = (settle: () => void) => {
      if (finished) return
      finished = true
      clearTimeout(timer)
      stop()
      for (const socket of sockets) socket.destroy()
      listener.close()
      settle()
    }
    listener.listen(0, "127.0.0.1", () => {
      const address = listener.address()
      const port = typeof address === "object" && address !== null ? address.port : 0
      stop = client(port)
    })
  })

/** A `node:tls` client; its own error is expected and ignored. */
const tlsClient = (options: Tls.ConnectionOptions): (port: number) => Stop => (port) => {
  const socket = Tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...options })
  socket.on("error", () => {})
  return () => socket.destroy()
}

/** A plain TCP client that writes `bytes` and then waits. */
const plainClient = (bytes: string | Uint8Array): (port: number) => Stop => (port) => {
  const socket = Net.connect({ host: "127.0.0.1", port }, () => socket.write(bytes))
  socket.on("error", () => {})
  return () => socket.destroy()
}

const classified = (
  serverOptions: Tls.TLSSocketOptions,
  client: (port: number) => Stop
): Effect.Effect<{ readonly code: unknown; readonly failure: HandshakeFailure.HandshakeFailure }> =>
  Effect.promise(() => serverError(serverOptions, client)).pipe(
    Effect.map((error) => ({
      code: typeof error === "object" && error !== null && "code" in error ? error.code : undefined,
      failure: HandshakeFailure.classify(error)
    }))
  )

describe("HandshakeFailure.classify: failures provoked over loopback", () => {
  it.live("a TLS 1.1 client against a TLS 1.2 minimum → protocol-version", () =>
    Effect.gen(function*() {
      const { code, failure } = yield* classified(
        {},
        // OpenSSL 3 allows TLS 1.1 only at security level 0.
        tlsClient({ minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" })
      )
      assert.strictEqual(code, "ERR_SSL_UNSUPPORTED_PROTOCOL")
      assert.strictEqual(failure.reason, "protocol-version")
      assert.match(failure.detail, /^ERR_SSL_UNSUPPORTED_PROTOCOL: .*unsupported protocol/)
    }))

  it.live("a TLS 1.3-only client against a TLS 1.2 maximum → protocol-version", () =>
    Effect.gen(function*() {
      const { failure } = yield* classified({ maxVersion: "TLSv1.2" }, tlsClient({ minVersion: "TLSv1.3" }))
      assert.strictEqual(failure.reason, "protocol-version")
    }))

  it.live("plaintext SMTP sent to a TLS socket → bad-record", () =>
    Effect.gen(function*() {
      const { code, failure } = yield* classified({}, plainClient("EHLO x\r\n"))
      assert.strictEqual(code, "ERR_SSL_WRONG_VERSION_NUMBER")
      assert.strictEqual(failure.reason, "bad-record")
    }))

  it.live("pipelined plaintext after STARTTLS reaches OpenSSL as a bad record", () =>
    Effect.gen(function*() {
      const { failure } = yield* classified({}, plainClient("NOOP\r\nMAIL FROM:<a@b.example>\r\n"))
      assert.strictEqual(failure.reason, "bad-record")
    }))

  it.live("an HTTP request sent to a TLS socket → bad-record", () =>
    Effect.gen(function*() {
      const { code, failure } = yield* classified({}, plainClient("GET / HTTP/1.1\r\nHost: mx.example.test\r\n\r\n"))
      assert.strictEqual(code, "ERR_SSL_HTTP_REQUEST")
      assert.strictEqual(failure.reason, "bad-record")
    }))

  it.live("no cipher in common → no-shared-cipher", () =>
    Effect.gen(function*() {
      const { code, failure } = yield* classified(
        { ciphers: "ECDHE-ECDSA-AES256-GCM-SHA384" },
        tlsClient({ maxVersion: "TLSv1.2", ciphers: "ECDHE-ECDSA-AES128-GCM-SHA256" })
      )
      assert.strictEqual(code, "ERR_SSL_NO_SHARED_CIPHER")
      assert.strictEqual(failure.reason, "no-shared-cipher")
    }))

  it.live("a client that resets the connection mid-handshake → peer-closed", () =>
    Effect.gen(function*() {
      const { code, failure } = yield* classified({}, (port) => {
        // The start of a ClientHello record, then a TCP reset.
        const socket = Net.connect({ host: "127.0.0.1", port }, () => {
          socket.write(Uint8Array.of(0x16, 0x03, 0x01, 0x00, 0xc8, 0x01))
          setTimeout(() => socket.resetAndDestroy(), 50)
        })
        socket.on("error", () => {})
        return () => socket.destroy()
      })
      assert.strictEqual(code, "ECONNRESET")
      assert.strictEqual(failure.reason, "peer-closed")
    }))

  it.live("openssl s_client that does not trust the certificate sends an alert → client-alert", () =>
    Effect.gen(function*() {
      const { code, failure } = yield* classified({}, (port) => {
        const child = ChildProcess.spawn(
          "openssl",
          ["s_client", "-connect", `127.0.0.1:${port}`, "-servername", "mx.example.test", "-verify_return_error", "-CAfile", otherPki.ca.certificateFile],
          { stdio: ["pipe", "ignore", "ignore"] }
        )
        child.on("error", () => {})
        return () => child.kill()
      })
      assert.strictEqual(code, "ERR_SSL_TLSV1_ALERT_UNKNOWN_CA")
      assert.strictEqual(failure.reason, "client-alert")
    }))
})
