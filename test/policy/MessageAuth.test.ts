import { assert, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import { dkimSign } from "mailauth"
import * as Dns from "../../src/policy/Dns.ts"
import * as MessageAuth from "../../src/policy/MessageAuth.ts"
import { table } from "../support/DnsTable.ts"

const keys = Crypto.generateKeyPairSync("rsa", { modulusLength: 2048 })
const zone: Readonly<Record<string, Array<Array<string>>>> = {
  "TXT s1._domainkey.signed.test": [[`v=DKIM1; k=rsa; p=${keys.publicKey.export({ type: "spki", format: "der" }).toString("base64")}`]],
  "TXT _dmarc.signed.test": [["v=DMARC1; p=reject"]],
  "TXT signed.test": [["v=spf1 -all"]]
}
const resolve = table(zone)

const sign = async (message: string): Promise<string> => {
  const signature = { signingDomain: "signed.test", selector: "s1", privateKey: keys.privateKey.export({ type: "pkcs8", format: "pem" }).toString() }
  return `${(await dkimSign(message, { ...signature, signatureData: [signature] })).signatures}${message}`
}

/** Streams `message` into a verifier in `pieces` chunks, as the session does. */
const verify = async (message: string, pieces: number, recorded?: Array<Dns.Answer>) => {
  const verifier = MessageAuth.start({
    sender: "news@signed.test",
    ip: "192.0.2.1",
    helo: "client.test",
    hostname: "mx.test",
    resolve: recorded === undefined ? resolve : Dns.recording(resolve, (a) => recorded.push(a))
  })
  const bytes = new TextEncoder().encode(message)
  const size = Math.ceil(bytes.length / pieces)
  for (let i = 0; i < bytes.length; i += size) verifier.write(bytes.subarray(i, i + size))
  return verifier.end()
}

describe("MessageAuth", () => {
  it("a signed message: DKIM passes, DMARC passes on the aligned signature (SPF fails), whatever the chunking", async () => {
    const message = await sign("From: news@signed.test\r\nSubject: hi\r\n\r\nbody\r\n")
    for (const pieces of [1, 3, 17]) {
      const outcome = await verify(message, pieces)
      assert.deepStrictEqual(outcome.dkim, [{ domain: "signed.test", selector: "s1", result: "pass" }], `${pieces} pieces`)
      assert.deepStrictEqual(outcome.dmarc, { result: "pass", domain: "signed.test", policy: "reject" })
      assert.match(outcome.header, /^Authentication-Results: mx\.test;/)
      assert.notInclude(outcome.header, "Received-SPF")
    }
  })

  it("the same outcome replayed from the answers the live check recorded", async () => {
    const message = await sign("From: news@signed.test\r\nSubject: hi\r\n\r\nbody\r\n")
    const recorded: Array<Dns.Answer> = []
    const live = await verify(message, 1, recorded)
    const replayed = MessageAuth.start({ sender: "news@signed.test", ip: "192.0.2.1", helo: "client.test", hostname: "mx.test", resolve: Dns.replaying(recorded) })
    replayed.write(new TextEncoder().encode(message))
    const again = await replayed.end()
    assert.deepStrictEqual(again.dkim, live.dkim)
    assert.deepStrictEqual(again.dmarc, live.dmarc)
  })

  it("an unsigned message from a p=reject domain: no signature, DMARC fails", async () => {
    const outcome = await verify("From: ceo@signed.test\r\nSubject: wire\r\n\r\nmoney\r\n", 1)
    assert.deepStrictEqual(outcome.dkim, [])
    assert.deepStrictEqual(outcome.dmarc, { result: "fail", domain: "signed.test", policy: "reject" })
  })

  it("an aborted message stops the check without an unhandled rejection", async () => {
    const verifier = MessageAuth.start({ sender: "a@b.test", ip: "192.0.2.1", helo: "c.test", hostname: "mx.test", resolve })
    verifier.write(new TextEncoder().encode("From: a@b.test\r\n"))
    verifier.abort()
    await new Promise((done) => setTimeout(done, 50))
  })
})
