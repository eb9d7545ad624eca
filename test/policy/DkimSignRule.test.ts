/**
 * dkimSign({ domain, selector, key }) at postq: the queue signs the message as it will be
 * delivered and puts the DKIM-Signature above it; mailauth verifies it with the record keygen
 * would publish. Only an authenticated client's mail from the domain is signed by default;
 * an unusable key stops the configuration from loading.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { Effect } from "effect"
import type * as Event from "../../src/log/Event.ts"
import { makeMemory } from "../../src/log/EventLog.ts"
import * as DkimSign from "../../src/policy/DkimSign.ts"
import * as Policy from "../../src/policy/Policy.ts"
import { accept, mailFiles, ofTag, optionsFor, start, tempDirectory } from "../queue/QueueFixtures.ts"
import { dkimResults } from "../support/DnsTable.ts"
import { thrown } from "../support/RuleContext.ts"

const encoder = new TextEncoder()
const decoder = new TextDecoder()

const keyFile = (directory: string, type: "rsa" | "ed25519") => {
  const pair = type === "rsa"
    ? Crypto.generateKeyPairSync("rsa", { modulusLength: 2048 })
    : Crypto.generateKeyPairSync("ed25519")
  const pem = pair.privateKey.export({ type: "pkcs8", format: "pem" }).toString()
  const file = Path.join(directory, `${type}.pem`)
  Fs.writeFileSync(file, pem, { mode: 0o600 })
  return { file, record: DkimSign.dnsRecord(pem) }
}

const origin = (authenticated: string | undefined): Event.MessageOrigin => ({
  peer: { address: "192.0.2.10", port: 40000 },
  local: { address: "127.0.0.1", port: 587 },
  role: "submission",
  ...(authenticated === undefined ? {} : { authenticated })
})

/** mailauth's DKIM results for a delivered message, the selector's record given instead of DNS. */
const verified = (message: Uint8Array, record: string) => dkimResults(message, "s1._domainkey.mail.test", record, "alice@mail.test")

describe("dkimSign rule at postq", () => {
  for (const type of ["rsa", "ed25519"] as const) {
    it.live(`signs an authenticated client's message from its domain (${type}); the signature verifies`, () =>
      Effect.gen(function*() {
        const root = yield* tempDirectory("dkim-sign-rule")
        const key = keyFile(root, type)
        const policy = Policy.make({ ...Policy.defaultRuleSet, rules: { postq: [DkimSign.rule({ domain: "Mail.Test", selector: "s1", key: key.file })] } })
        const sink: Array<Event.Event> = []
        const queue = yield* start({ ...optionsFor(root), policy }, makeMemory(sink))
        const message = encoder.encode("Received: from client.test\r\nFrom: Alice <alice@mail.test>\r\nSubject: signed\r\n\r\nHello,\r\nsigned at postq.\r\n")
        yield* accept(queue, message, ["bob@mail.test"], origin("alice"), "alice@mail.test")
        yield* queue.drain
        const [file] = yield* mailFiles(root, "mail.test", "bob")
        const text = decoder.decode(file?.bytes)
        assert.match(text, new RegExp(`^DKIM-Signature: v=1; a=${type}-sha256; c=relaxed/relaxed; d=mail\\.test;[^\\r\\n]* s=s1;[^\\r\\n]*\\r\\nReceived: from client\\.test\\r\\n`))
        assert.deepStrictEqual(yield* Effect.promise(() => verified(file?.bytes ?? new Uint8Array(), key.record)), [{ domain: "mail.test", selector: "s1", result: "pass" }])
        assert.deepStrictEqual(ofTag(sink, "PolicyDecided").map((e) => [e.stage, e.verdict, e.headers?.[0]?.name]), [["postq", "accept", "DKIM-Signature"]])
      }))
  }

  it.live("mail that is not an authenticated client's, or whose From or sender is in another domain, is not signed", () =>
    Effect.gen(function*() {
      const root = yield* tempDirectory("dkim-sign-rule")
      const key = keyFile(root, "rsa")
      const policy = Policy.make({ ...Policy.defaultRuleSet, rules: { postq: [DkimSign.rule({ domain: "mail.test", selector: "s1", key: key.file })] } })
      const queue = yield* start({ ...optionsFor(root), policy }, makeMemory([]))
      yield* accept(queue, encoder.encode("From: alice@mail.test\r\nSubject: anonymous\r\n\r\nx\r\n"), ["bob@mail.test"], origin(undefined), "alice@mail.test")
      yield* accept(queue, encoder.encode("From: ceo@other.test\r\nSubject: other From\r\n\r\nx\r\n"), ["carol@mail.test"], origin("alice"), "alice@mail.test")
      yield* accept(queue, encoder.encode("From: alice@mail.test\r\nSubject: other sender\r\n\r\nx\r\n"), ["dave@mail.test"], origin("alice"), "alice@other.test")
      yield* queue.drain
      for (const user of ["bob", "carol", "dave"]) {
        const [file] = yield* mailFiles(root, "mail.test", user)
        assert.notInclude(decoder.decode(file?.bytes), "DKIM-Signature")
      }
    }))

  it("a key that cannot be read or is not RSA/Ed25519 stops the configuration from loading", () => {
    const directory = Fs.mkdtempSync(Path.join(Os.tmpdir(), "postern-dkim-rule-"))
    try {
      const missing = thrown(() => DkimSign.rule({ domain: "mail.test", selector: "s1", key: Path.join(directory, "absent.pem") }))
      assert.match(String(missing), /^RangeError: dkimSign: key .*absent\.pem: ENOENT/)
      const ec = Path.join(directory, "ec.pem")
      Fs.writeFileSync(ec, Crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }).toString())
      assert.match(String(thrown(() => DkimSign.rule({ domain: "mail.test", selector: "s1", key: ec }))), /not an RSA or Ed25519 private key/)
    } finally {
      Fs.rmSync(directory, { recursive: true, force: true })
    }
  })
})
