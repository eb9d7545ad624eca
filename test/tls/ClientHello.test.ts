/**
 * Reading the SNI from a ClientHello: real ClientHellos captured from Node's TLS client over
 * loopback (TLS 1.2 and 1.3, with and without a name), every truncation, and garbage.
 */
import * as Tls from "node:tls"
import { assert, describe, it } from "@effect/vitest"
import * as ClientHello from "../../src/tls/ClientHello.ts"
import * as Capture from "../support/ClientHello.ts"

describe("ClientHello.peek", () => {
  const cases: ReadonlyArray<readonly [string, Tls.ConnectionOptions, string | undefined]> = [
    ["TLS 1.3 with a name", { servername: "mx.example.test" }, "mx.example.test"],
    ["TLS 1.2 only, with a name", { servername: "Mail.Example.Test", maxVersion: "TLSv1.2" }, "mail.example.test"],
    ["no SNI (an IP address as the host)", { servername: "" }, undefined]
  ]
  for (const [name, options, expected] of cases) {
    it(`${name}: the name, whole; and NeedMore at every shorter length`, async () => {
      const hello = new Uint8Array(await Capture.capture(options))
      assert.deepStrictEqual(ClientHello.peek(hello), { _tag: "ClientHello", serverName: expected })
      for (let length = 0; length < hello.length; length++) {
        assert.deepStrictEqual(ClientHello.peek(hello.subarray(0, length)), { _tag: "NeedMore" }, `length ${length}`)
      }
    })
  }

  it("plaintext is not a ClientHello", () => {
    assert.deepStrictEqual(ClientHello.peek(new TextEncoder().encode("EHLO client.test\r\n")), { _tag: "NotClientHello" })
  })

  it("a handshake record that is not a ClientHello", () => {
    assert.deepStrictEqual(ClientHello.peek(new Uint8Array([0x16, 3, 3, 0, 4, 2, 0, 0, 0])), { _tag: "NotClientHello" })
  })

  it("a ClientHello whose lengths overrun its record gives no name and never throws", () => {
    const broken = new Uint8Array([0x16, 3, 1, 0, 8, 1, 0, 0, 200, 3, 3, 0xff, 0xff])
    assert.deepStrictEqual(ClientHello.peek(broken.subarray(0, 13)), { _tag: "ClientHello", serverName: undefined })
  })

  it("random bytes after a handshake header never throw", () => {
    let seed = 7
    const next = () => (seed = (seed * 1103515245 + 12345) % 2147483648)
    for (let run = 0; run < 2000; run++) {
      const length = 9 + (next() % 300)
      const bytes = new Uint8Array(length).map(() => next() % 256)
      bytes[0] = 0x16
      bytes[3] = (length - 5) >> 8
      bytes[4] = (length - 5) & 0xff
      bytes[5] = 1
      const result = ClientHello.peek(bytes)
      assert.notStrictEqual(result._tag, "NeedMore")
    }
  })
})
