/**
 * DKIM verification and DMARC at the data stage, end to end: messages signed by the test with
 * mailauth's signer and a key published in a DNS zone on loopback, sent with smtplib; the
 * daemon verifies them as they stream in, adds Authentication-Results, the dmarc() rule
 * refuses a spoofed From under p=reject, and dkimVerify() refuses unsigned mail from a domain
 * that must sign.
 */
import * as ChildProcess from "node:child_process"
import * as Crypto from "node:crypto"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import { dkimSign, sealMessage } from "mailauth"
import type * as Event from "../../src/log/Event.ts"
import { type Daemon, readLog, startDaemon, uniqueToken, waitForEvent, waitForMail } from "../support/Daemon.ts"
import { type DnsServer, serveZone } from "../support/DnsServer.ts"

const keys = Crypto.generateKeyPairSync("rsa", { modulusLength: 2048 })
const publicKey = keys.publicKey.export({ type: "spki", format: "der" }).toString("base64")
const privateKey = keys.privateKey.export({ type: "pkcs8", format: "pem" }).toString()

const script = String.raw`
import json, smtplib, sys
port, sender, data = int(sys.argv[1]), sys.argv[2], sys.argv[3]
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20)
s.ehlo()
s.mail(sender)
s.rcpt("alice@example.test")
try:
    code, msg = s.data(data.encode())
except smtplib.SMTPDataError as e:
    code, msg = e.smtp_code, e.smtp_error
s.quit()
print(json.dumps([code, msg.decode()]))
`

const send = (port: number, sender: string, data: string) =>
  new Promise<[number, string]>((resolve, reject) => {
    ChildProcess.execFile("python3", ["-c", script, String(port), sender, data], { timeout: 30_000 }, (error, stdout, stderr) => {
      if (error !== null) return reject(new Error(`${error.message}\n${stderr}`))
      resolve(JSON.parse(stdout) as [number, string])
    })
  })

/**
 * A message as a forwarder passes it on: its ARC set (RFC 8617) added by `sealer` (key
 * `arc._domainkey.<sealer>`), recording what the forwarder found of DMARC for spoofed.test.
 */
const sealedBy = async (sealer: string, message: string, dmarc: "pass" | "fail" = "pass"): Promise<string> => {
  const seal = await sealMessage(Buffer.from(message), {
    signingDomain: sealer,
    selector: "arc",
    privateKey,
    cv: "none",
    authResults: `${sealer}; spf=pass smtp.mailfrom=spoofed.test; dkim=pass header.d=spoofed.test; dmarc=${dmarc} header.from=spoofed.test`
  })
  return `${seal.toString()}${message}`
}

const signed = async (message: string): Promise<string> => {
  // mailauth signs with the entries of signatureData (the fields beside it are their defaults).
  const signature = { signingDomain: "signed.test", selector: "s1", privateKey, canonicalization: "relaxed/relaxed" }
  const result = await dkimSign(message, { ...signature, signatureData: [signature] })
  return `${result.signatures}${message}`
}

describe("DKIM and DMARC at data, through a DNS zone on loopback", () => {
  let dns: DnsServer
  let daemon: Daemon

  beforeAll(async () => {
    dns = await serveZone({
      "signed.test": { TXT: ["v=spf1 ip4:127.0.0.0/8 -all"] },
      "s1._domainkey.signed.test": { TXT: [`v=DKIM1; k=rsa; p=${publicKey}`] },
      "_dmarc.signed.test": { TXT: ["v=DMARC1; p=reject"] },
      "other.test": { TXT: ["v=spf1 ip4:127.0.0.0/8 -all"] },
      "_dmarc.spoofed.test": { TXT: ["v=DMARC1; p=reject"] },
      "spoofed.test": { TXT: ["v=spf1 -all"] },
      "bank.test": { TXT: ["v=spf1 ip4:127.0.0.0/8 -all"] },
      "lists.test": { TXT: ["v=spf1 ip4:127.0.0.0/8 -all"] },
      "arc._domainkey.lists.test": { TXT: [`v=DKIM1; k=rsa; p=${publicKey}`] },
      "elsewhere.test": { TXT: ["v=spf1 ip4:127.0.0.0/8 -all"] },
      "arc._domainkey.elsewhere.test": { TXT: [`v=DKIM1; k=rsa; p=${publicKey}`] }
    })
    daemon = await startDaemon({
      spf: { check: true },
      dkim: { verify: true },
      dns: { servers: [dns.address], timeout: "2s" },
      policySource: `{ rules: { data: [dkimVerify({ required: ["bank.test"] }), dmarc({ trustedArcSealers: ["lists.test"] })] } }`
    })
  })

  afterAll(async () => {
    await daemon?.dispose()
    await dns?.close()
  })

  it("a signed message passes DKIM and DMARC and is delivered with Authentication-Results", async () => {
    const token = uniqueToken("dkim-pass")
    const message = await signed(`From: news@signed.test\r\nTo: alice@example.test\r\nSubject: ${token}\r\n\r\n${token}\r\n`)
    const [code] = await send(daemon.ports.smtp, "news@signed.test", message)
    assert.strictEqual(code, 250)
    const mail = await waitForMail(daemon, "example.test", "alice", token)
    const unfolded = mail.text.replace(/\r\n[ \t]+/g, " ")
    assert.match(unfolded, /^Authentication-Results: mx\.postern\.test; dkim=pass [^\r\n]*header\.d=signed\.test/)
    // ARC is validated too: this message has no chain.
    assert.match(unfolded, /dmarc=pass \(p=REJECT arc=none\)/)
    const authenticated = (await readLog(daemon.logDir)).filter((e): e is Event.MessageAuthenticated => e._tag === "MessageAuthenticated").at(-1)
    assert.deepStrictEqual(authenticated?.dkim, [{ domain: "signed.test", selector: "s1", result: "pass" }])
    assert.deepStrictEqual(authenticated?.dmarc, { result: "pass", domain: "signed.test", policy: "reject" })
  })

  it("a message altered after signing does not pass DKIM (mailauth says neutral: body hash did not verify), and DMARC still passes on aligned SPF", async () => {
    const token = uniqueToken("dkim-altered")
    const message = (await signed(`From: news@signed.test\r\nSubject: ${token}\r\n\r\noriginal ${token}\r\n`)).replace("original", "altered")
    const [code] = await send(daemon.ports.smtp, "news@signed.test", message)
    assert.strictEqual(code, 250)
    await waitForMail(daemon, "example.test", "alice", token)
    const authenticated = (await readLog(daemon.logDir)).filter((e): e is Event.MessageAuthenticated => e._tag === "MessageAuthenticated").at(-1)
    assert.deepStrictEqual(authenticated?.dkim.map((d) => d.result), ["neutral"])
    assert.strictEqual(authenticated?.dmarc?.result, "pass")
  })

  it("a From in a p=reject domain with neither aligned DKIM nor SPF is refused by dmarc() with 550 5.7.1", async () => {
    const [code, text] = await send(daemon.ports.smtp, "someone@other.test", "From: ceo@spoofed.test\r\nSubject: urgent\r\n\r\nwire money\r\n")
    assert.deepStrictEqual([code, text], [550, "5.7.1 DMARC policy of the sender's domain refuses this message"])
    const decided = await waitForEvent(daemon.logDir, "the dmarc decision", (e): e is Event.PolicyDecided => e._tag === "PolicyDecided" && e.rule === "dmarc")
    assert.deepStrictEqual(decided.because, { dmarc: "fail", domain: "spoofed.test", policy: "reject" })
  })

  it("dkimVerify({ required }): mail from bank.test without a passing signature of bank.test is refused with 550 5.7.20, though SPF passes", async () => {
    const [code, text] = await send(daemon.ports.smtp, "alerts@bank.test", "From: Bank <alerts@bank.test>\r\nSubject: statement\r\n\r\nyour statement\r\n")
    assert.deepStrictEqual([code, text], [550, "5.7.20 No passing DKIM signature of the sender's domain"])
    const decided = await waitForEvent(daemon.logDir, "the dkim verify decision", (e): e is Event.PolicyDecided => e._tag === "PolicyDecided" && e.rule === "dkim verify")
    assert.deepStrictEqual(decided.because, { dkim: "none", required: "bank.test" })
  })

  it("ARC (RFC 8617): a p=reject failure forwarded by a trusted list that found DMARC passing is delivered, arc=pass in Authentication-Results; sealed by anyone else, or by the list after DMARC failed there, it is refused", async () => {
    const token = uniqueToken("arc-list")
    const message = `From: ceo@spoofed.test\r\nTo: list@lists.test\r\nDate: ${new Date().toUTCString()}\r\nSubject: ${token}\r\n\r\n[list] ${token}\r\n`
    const [code] = await send(daemon.ports.smtp, "list-bounces@lists.test", await sealedBy("lists.test", message))
    assert.strictEqual(code, 250)
    const mail = await waitForMail(daemon, "example.test", "alice", token)
    assert.match(mail.text.replace(/\r\n[ \t]+/g, " "), /^Authentication-Results: [^\r\n]* arc=pass \(i=1/)
    const authenticated = await waitForEvent(daemon.logDir, "the ARC result", (e): e is Event.MessageAuthenticated =>
      e._tag === "MessageAuthenticated" && e.arc?.sealer === "lists.test")
    assert.deepStrictEqual([authenticated.arc, authenticated.dmarc?.result], [
      { result: "pass", instance: 1, sealer: "lists.test", recorded: { dmarc: "pass", from: "spoofed.test" } },
      "fail"
    ])
    const refusal = [550, "5.7.1 DMARC policy of the sender's domain refuses this message"]
    const untrusted = await send(daemon.ports.smtp, "bounces@elsewhere.test", await sealedBy("elsewhere.test", message.replace(token, `${token}-untrusted`)))
    assert.deepStrictEqual(untrusted, refusal)
    // The trusted list saw a forgery too (it recorded DMARC failing): no reason to let it through.
    const forged = await send(daemon.ports.smtp, "list-bounces@lists.test", await sealedBy("lists.test", message.replace(token, `${token}-forged`), "fail"))
    assert.deepStrictEqual(forged, refusal)
  })

  it("replay --verify reproduces these sessions; the transcript shows DKIM and DMARC", async () => {
    const verify = await daemon.replay([daemon.logDir, "--verify"])
    assert.strictEqual(verify.code, 0, verify.stdout)
    const events = await readLog(daemon.logDir)
    const session = events.find((e): e is Event.MessageAuthenticated => e._tag === "MessageAuthenticated")?.session ?? ""
    const transcript = await daemon.replay([daemon.logDir, "--session", session])
    assert.include(transcript.stdout, "-- DKIM pass (signed.test s1); DMARC pass for signed.test (p=reject)")
  })
})
