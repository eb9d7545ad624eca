import { assert, describe, it } from "@effect/vitest"
import * as Received from "../../src/session/Received.ts"

const at = Date.UTC(2026, 10, 22, 3, 10, 53)

const facts: Received.ReceivedFacts = {
  helo: "helo.example",
  clientName: "client.example",
  clientAddress: "192.0.2.1",
  hostname: "mx.example",
  protocol: "ESMTP",
  tlsComment: undefined,
  queueId: "4F2A1C3B0A",
  recipient: "user@example.org",
  at
}

describe("Received.formatDate", () => {
  const cases: ReadonlyArray<readonly [number, string]> = [
    [at, "Sun, 22 Nov 2026 03:10:53 +0000"],
    [Date.UTC(2024, 0, 1, 0, 0, 0), "Mon, 1 Jan 2024 00:00:00 +0000"],
    [Date.UTC(2024, 1, 29, 23, 59, 59, 999), "Thu, 29 Feb 2024 23:59:59 +0000"],
    [0, "Thu, 1 Jan 1970 00:00:00 +0000"]
  ]
  for (const [millis, text] of cases) {
    it(text, () => {
      assert.strictEqual(Received.formatDate(millis), text)
    })
  }

  it("is UTC whatever the process time zone", () => {
    assert.strictEqual(Received.formatDate(Date.UTC(2026, 6, 4, 23, 30, 0)), "Sat, 4 Jul 2026 23:30:00 +0000")
  })
})

describe("Received.format", () => {
  it("the Postfix shape with every fact", () => {
    assert.strictEqual(
      Received.format(facts),
      "Received: from helo.example (client.example [192.0.2.1])\r\n" +
        "\tby mx.example (Postern) with ESMTP id 4F2A1C3B0A\r\n" +
        "\tfor <user@example.org>; Sun, 22 Nov 2026 03:10:53 +0000\r\n"
    )
  })

  it("unknown HELO and client name, several recipients (no for clause)", () => {
    assert.strictEqual(
      Received.format({ ...facts, helo: undefined, clientName: undefined, recipient: undefined, protocol: "SMTP" }),
      "Received: from unknown (unknown [192.0.2.1])\r\n" +
        "\tby mx.example (Postern) with SMTP id 4F2A1C3B0A; Sun, 22 Nov 2026 03:10:53 +0000\r\n"
    )
  })

  it("a TLS comment on its own line", () => {
    assert.strictEqual(
      Received.format({
        ...facts,
        protocol: "ESMTPS",
        tlsComment: "using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)"
      }),
      "Received: from helo.example (client.example [192.0.2.1])\r\n" +
        "\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits))\r\n" +
        "\tby mx.example (Postern) with ESMTPS id 4F2A1C3B0A\r\n" +
        "\tfor <user@example.org>; Sun, 22 Nov 2026 03:10:53 +0000\r\n"
    )
  })

  it("an IPv6 client address", () => {
    assert.strictEqual(
      Received.format({ ...facts, clientAddress: "2001:db8::1", recipient: undefined }),
      "Received: from helo.example (client.example [2001:db8::1])\r\n" +
        "\tby mx.example (Postern) with ESMTP id 4F2A1C3B0A; Sun, 22 Nov 2026 03:10:53 +0000\r\n"
    )
  })

  describe("client-supplied text cannot break out of the header", () => {
    const sanitized: ReadonlyArray<readonly [string, string]> = [
      ["evil\r\nBcc: victim@example.org", "evil??Bcc: victim@example.org"],
      ["a(b)c", "a?b?c"],
      ["tab\there", "tab?here"],
      ["nul\u0000del\u007f", "nul?del?"],
      ["bare\nlf", "bare?lf"]
    ]
    for (const [helo, shown] of sanitized) {
      it(JSON.stringify(helo), () => {
        const header = Received.format({ ...facts, helo, recipient: undefined })
        assert.strictEqual(
          header,
          `Received: from ${shown} (client.example [192.0.2.1])\r\n` +
            "\tby mx.example (Postern) with ESMTP id 4F2A1C3B0A; Sun, 22 Nov 2026 03:10:53 +0000\r\n"
        )
      })
    }

    it("the client name and the recipient are sanitised too", () => {
      const header = Received.format({ ...facts, clientName: "x)\r\n(y", recipient: "a\r\nb@example.org" })
      assert.strictEqual(
        header,
        "Received: from helo.example (x????y [192.0.2.1])\r\n" +
          "\tby mx.example (Postern) with ESMTP id 4F2A1C3B0A\r\n" +
          "\tfor <a??b@example.org>; Sun, 22 Nov 2026 03:10:53 +0000\r\n"
      )
    })

    it("only the header's own line breaks remain, each followed by a tab", () => {
      const header = Received.format({ ...facts, helo: "a\r\n\r\nb\rc\nd", tlsComment: "using TLSv1.2" })
      const breaks = header.split("\r\n")
      assert.strictEqual(breaks.pop(), "")
      assert.isTrue(breaks.slice(1).every((l) => l.startsWith("\t")))
      assert.isFalse(breaks.some((l) => l.includes("\r") || l.includes("\n")))
    })

    it("a long HELO is cut at 255 characters", () => {
      const header = Received.format({ ...facts, helo: "h".repeat(1000), recipient: undefined })
      assert.isTrue(header.startsWith(`Received: from ${"h".repeat(255)} (client.example`))
    })
  })
})
