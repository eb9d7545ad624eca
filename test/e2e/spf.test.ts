/**
 * SPF at MAIL end to end: a DNS zone of the test's own on loopback (test/support/DnsServer.ts),
 * the daemon checking through it with mailauth, the spf() rule refusing a fail with 550 5.7.23,
 * Received-SPF above Received in the delivered message, every DNS answer in the log, and replay
 * --rules deciding again from the recorded facts after the DNS server is gone.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import type * as Event from "../../src/log/Event.ts"
import { type Daemon, jsonLines, readLog, startDaemon, uniqueToken, waitForEvent, waitForMail } from "../support/Daemon.ts"
import { type DnsServer, serveZone } from "../support/DnsServer.ts"

const script = String.raw`
import json, smtplib, sys
port, sender, data, helo = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
s = smtplib.SMTP("127.0.0.1", port, local_hostname=helo, timeout=20)
s.ehlo()
out = [list(s.mail(sender))]
if out[0][0] == 250:
    out.append(list(s.rcpt("alice@example.test")))
    out.append(list(s.data(data.encode())))
s.quit()
print(json.dumps([[code, msg.decode()] for code, msg in out]))
`

const send = (port: number, sender: string, data: string, helo = "client.test") =>
  new Promise<Array<[number, string]>>((resolve, reject) => {
    ChildProcess.execFile("python3", ["-c", script, String(port), sender, data, helo], { timeout: 30_000 }, (error, stdout, stderr) => {
      if (error !== null) return reject(new Error(`${error.message}\n${stderr}`))
      resolve(JSON.parse(stdout) as Array<[number, string]>)
    })
  })

describe("SPF at MAIL, through a DNS zone on loopback", () => {
  let dns: DnsServer
  let daemon: Daemon

  beforeAll(async () => {
    dns = await serveZone({
      "pass.test": { TXT: ["v=spf1 ip4:127.0.0.0/8 -all"] },
      "fail.test": { TXT: ["v=spf1 ip4:192.0.2.1 -all"] },
      "soft.test": { TXT: ["v=spf1 ~all"] }
    })
    daemon = await startDaemon({
      spf: { check: true },
      dns: { servers: [dns.address], timeout: "2s" },
      policySource: `{ rules: { mail: [spf({ identities: "both" })] } }`
    })
  })

  afterAll(async () => {
    await daemon?.dispose()
    await dns?.close()
  })

  it("pass: accepted, and the delivered message carries Received-SPF: pass above Received", async () => {
    const token = uniqueToken("spf-pass")
    const replies = await send(daemon.ports.smtp, "someone@pass.test", `Subject: ${token}\r\n\r\n${token}\r\n`)
    assert.deepStrictEqual(replies.map(([code]) => code), [250, 250, 250])
    const mail = await waitForMail(daemon, "example.test", "alice", token)
    assert.match(mail.text, /^Received-SPF: pass \(mx\.postern\.test: domain of someone@pass\.test designates 127\.0\.0\.1 as permitted sender\)/)
    assert.isBelow(mail.text.indexOf("Received-SPF:"), mail.text.indexOf("\r\nReceived: "))
  })

  it("fail: the spf rule refuses MAIL with 550 5.7.23, and its decision names the result", async () => {
    const replies = await send(daemon.ports.smtp, "someone@fail.test", "unused")
    assert.deepStrictEqual(replies, [[550, "5.7.23 SPF validation failed"]])
    const decided = await waitForEvent(daemon.logDir, "the spf decision", (e): e is Event.PolicyDecided => e._tag === "PolicyDecided" && e.rule === "spf")
    assert.deepStrictEqual(decided.because, { spf: "fail", domain: "fail.test", identity: "mail" })
    const events = await readLog(daemon.logDir)
    const answered = events.filter((e): e is Event.DnsAnswered => e._tag === "DnsAnswered" && e.name === "fail.test")
    assert.deepStrictEqual(answered.map((e) => [e.type, e.records]), [["TXT", [["v=spf1 ip4:192.0.2.1 -all"]]]])
    assert.isTrue(dns.questions.some((q) => q.name === "fail.test" && q.type === "TXT"))
  })

  it("softfail goes on by default (the message is marked); an unknown domain is none", async () => {
    const token = uniqueToken("spf-soft")
    const replies = await send(daemon.ports.smtp, "someone@soft.test", `Subject: ${token}\r\n\r\n${token}\r\n`)
    assert.deepStrictEqual(replies.map(([code]) => code), [250, 250, 250])
    const mail = await waitForMail(daemon, "example.test", "alice", token)
    assert.match(mail.text, /^Received-SPF: softfail /)
    const none = await send(daemon.ports.smtp, "someone@unknown.test", "Subject: x\r\n\r\nx\r\n")
    assert.strictEqual(none[0]?.[0], 250)
    await waitForEvent(daemon.logDir, "the unknown domain's check", (e): e is Event.SpfChecked => e._tag === "SpfChecked" && e.domain === "unknown.test")
    const checked = (await readLog(daemon.logDir)).filter((e): e is Event.SpfChecked => e._tag === "SpfChecked" && e.identity !== "helo")
    assert.deepStrictEqual(checked.map((e) => [e.domain, e.result]).slice(-2), [["soft.test", "softfail"], ["unknown.test", "none"]])
  })

  it("the HELO identity (RFC 7208 2.3) is checked at MAIL too: a HELO name whose SPF fails is refused at MAIL by spf({ identities: \"both\" }) even for a passing sender", async () => {
    const replies = await send(daemon.ports.smtp, "someone@pass.test", "unused", "fail.test")
    assert.deepStrictEqual(replies, [[550, "5.7.23 SPF validation failed"]])
    await waitForEvent(daemon.logDir, "the HELO decision", (e): e is Event.PolicyDecided => e._tag === "PolicyDecided" && e.because?.["identity"] === "helo")
    const events = await readLog(daemon.logDir)
    const helo = events.filter((e): e is Event.SpfChecked => e._tag === "SpfChecked" && e.identity === "helo" && e.domain === "fail.test").at(-1)
    assert.strictEqual(helo?.result, "fail")
    const decided = events.filter((e): e is Event.PolicyDecided => e._tag === "PolicyDecided" && e.rule === "spf" && e.session === helo?.session).at(-1)
    assert.deepStrictEqual(decided?.because, { spf: "fail", domain: "fail.test", identity: "helo" })
    // An address literal is not a name to check: no HELO result, the sender's decides.
    const literal = await send(daemon.ports.smtp, "someone@pass.test", "Subject: x\r\n\r\nx\r\n", "[127.0.0.1]")
    assert.deepStrictEqual(literal.map(([code]) => code), [250, 250, 250])
  })

  it("MAIL repeated for the same sender in one session is answered from the session's check: one DNS query, not one per MAIL", async () => {
    const loop = String.raw`
import smtplib, sys
s = smtplib.SMTP("127.0.0.1", int(sys.argv[1]), local_hostname="client.test", timeout=20)
s.ehlo()
for i in range(5):
    s.mail("again@soft.test")
    s.rset()
s.quit()
`
    const before = dns.questions.filter((q) => q.name === "soft.test").length
    await new Promise<void>((resolve, reject) =>
      ChildProcess.execFile("python3", ["-c", loop, String(daemon.ports.smtp)], { timeout: 30_000 }, (error) => (error === null ? resolve() : reject(error))))
    assert.strictEqual(dns.questions.filter((q) => q.name === "soft.test").length - before, 1)
  })

  it("with the DNS server gone, replay --rules decides again from the recorded SPF results and answers; the transcript shows them", async () => {
    await dns.close()
    const other = `${daemon.stateDir}/stricter.config.ts`
    Fs.writeFileSync(
      other,
      `import { defineConfig, deny, spf } from "postern"\nexport default defineConfig({ policy: { rules: { mail: [spf({ on: { softfail: deny(550, "5.7.23", "Softfail refused") } })] } } })\n`
    )
    const result = await daemon.replay([daemon.logDir, "--rules", other, "--json"])
    assert.strictEqual(result.code, 0, result.stderr)
    const changes = jsonLines(result.stdout).filter((l) => "stage" in l)
    // The softfail sender of the third test and the five MAILs of the repeated-sender test are
    // now refused; the HELO test's sender passes, and these rules look at the sender only.
    assert.deepStrictEqual(
      changes.map((c) => [c["stage"], (c["recorded"] as Record<string, unknown>)["verdict"], (c["now"] as Record<string, unknown>)["verdict"], (c["now"] as Record<string, unknown>)["text"]]),
      [
        ["mail", "accept", "deny", "Softfail refused"],
        ["mail", "deny", "accept", undefined],
        ...Array.from({ length: 5 }, () => ["mail", "accept", "deny", "Softfail refused"])
      ]
    )
    const events = await readLog(daemon.logDir)
    const failSession = events.find((e): e is Event.SpfChecked => e._tag === "SpfChecked" && e.result === "fail")?.session ?? ""
    const transcript = await daemon.replay([daemon.logDir, "--session", failSession])
    assert.include(transcript.stdout, "-- DNS TXT fail.test: [[\"v=spf1 ip4:192.0.2.1 -all\"]]")
    assert.include(transcript.stdout, "-- SPF fail for fail.test")
    assert.include(transcript.stdout, "mail denied by rule 'spf' (550 5.7.23) [spf fail, domain fail.test, identity mail]")
    assert.include(transcript.stdout, "-- SPF (HELO) none for client.test")
    const verify = await daemon.replay([daemon.logDir, "--verify"])
    assert.strictEqual(verify.code, 0, verify.stdout)
  })
})
