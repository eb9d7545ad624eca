/**
 * DKIM signing end to end: `postern dkim keygen` makes the key and prints the record; an
 * authenticated client's message from example.test is signed; the signature verifies with an
 * independent verifier (dkimpy, Debian's python3-dkim, with the record handed to it: no DNS) and
 * with mailauth; mail from the Internet that merely claims the domain is not signed.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Users from "../../src/auth/Users.ts"
import type * as Dns from "../../src/policy/Dns.ts"
import * as MessageAuth from "../../src/policy/MessageAuth.ts"
import { type Daemon, runPostern, startDaemon, uniqueToken, waitForMail } from "../support/Daemon.ts"

const password = "signing test passphrase"

const submitScript = String.raw`
import json, smtplib, ssl, sys
port, login, data = int(sys.argv[1]), sys.argv[2] == "login", sys.argv[3]
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20)
s.ehlo()
s.starttls(context=context)
s.ehlo()
if login:
    s.login("alice", sys.argv[4])
s.mail("alice@example.test")
s.rcpt("bob@example.test")
code, msg = s.data(data.encode())
s.quit()
print(json.dumps([code, msg.decode()]))
`

/** dkimpy's verdict on a message, with the DNS answer given instead of looked up. */
const dkimpyScript = String.raw`
import sys, dkim
record = sys.argv[1].encode()
message = open(sys.argv[2], "rb").read()
def dnsfunc(name, timeout=5):
    return record if name == b"s1._domainkey.example.test." else None
print("pass" if dkim.verify(message, dnsfunc=dnsfunc) else "fail")
`

const run = (file: string, args: ReadonlyArray<string>) =>
  new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    ChildProcess.execFile(file, [...args], { timeout: 30_000 }, (error, stdout, stderr) =>
      resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout, stderr }))
  })

/** A python3 that has dkimpy: the one on PATH, or Debian's (where python3-dkim installs it). */
const pythonWithDkim = async (): Promise<string> => {
  for (const candidate of ["python3", "/usr/bin/python3"]) {
    if ((await run(candidate, ["-c", "import dkim"])).code === 0) return candidate
  }
  throw new Error("no python3 with the dkim module (Debian package python3-dkim; .ci/run installs it)")
}

describe("DKIM signing of mail from our own domains", () => {
  let daemon: Daemon
  let record = ""
  let keyFile = ""

  beforeAll(async () => {
    const keys = Fs.mkdtempSync(Path.join(Fs.realpathSync("/tmp"), "postern-dkim-"))
    const generated = await runPostern(["dkim", "keygen", "--domain", "example.test", "--selector", "s1", "--out", keys])
    assert.strictEqual(generated.code, 0, generated.stderr)
    keyFile = Path.join(keys, "example.test.s1.key")
    // The record is printed as zone-file strings of at most 255 characters: join them.
    const line = generated.stdout.split("\n").find((l) => l.startsWith("s1._domainkey.example.test. IN TXT ")) ?? ""
    record = [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1] ?? "").join("")
    daemon = await startDaemon({ dkim: { sign: [{ domain: "example.test", selector: "s1", key: keyFile }] } })
    await Users.addUser(Path.join(daemon.stateDir, "users"), "alice", password)
  })

  afterAll(async () => {
    await daemon?.dispose()
  })

  it("keygen writes the key (mode 0600) and prints the TXT record to publish", () => {
    assert.strictEqual(Fs.statSync(keyFile).mode & 0o777, 0o600)
    assert.match(record, /^v=DKIM1; k=rsa; p=[A-Za-z0-9+/]+=*$/)
  })

  it("an authenticated client's message is signed, and the signature verifies with dkimpy and with mailauth", async () => {
    const token = uniqueToken("dkim-signed")
    const message = `From: alice@example.test\r\nTo: bob@example.test\r\nSubject: ${token}\r\n\r\nSigned ${token}\r\n`
    const sent = await run("python3", ["-c", submitScript, String(daemon.ports.submission), "login", message, password])
    assert.strictEqual(sent.code, 0, sent.stderr)
    const delivered = await waitForMail(daemon, "example.test", "bob", token)
    assert.match(delivered.text, /^DKIM-Signature: v=1; a=rsa-sha256; c=relaxed\/relaxed; d=example\.test;/)
    const verdict = await run(await pythonWithDkim(), ["-c", dkimpyScript, record, delivered.file])
    assert.strictEqual(verdict.stdout.trim(), "pass", verdict.stderr)
    const resolve: Dns.Resolve = async (name, type) => {
      if (name === "s1._domainkey.example.test" && type === "TXT") return [[record]]
      throw Object.assign(new Error("not found"), { code: "ENOTFOUND" })
    }
    const verifier = MessageAuth.start({ sender: "alice@example.test", ip: "127.0.0.1", helo: "client.test", hostname: "check.test", resolve })
    verifier.write(Fs.readFileSync(delivered.file))
    assert.deepStrictEqual((await verifier.end()).dkim, [{ domain: "example.test", selector: "s1", result: "pass" }])
  })

  it("a message that only claims example.test, from a client that did not authenticate, is not signed", async () => {
    const token = uniqueToken("dkim-unsigned")
    const message = `From: alice@example.test\r\nSubject: ${token}\r\n\r\n${token}\r\n`
    const sent = await run("python3", ["-c", submitScript, String(daemon.ports.smtp), "anonymous", message])
    assert.strictEqual(sent.code, 0, sent.stderr)
    const delivered = await waitForMail(daemon, "example.test", "bob", token)
    assert.notInclude(delivered.text, "DKIM-Signature:")
  })

  it("keygen for Ed25519 prints a k=ed25519 record of the 32-byte key", async () => {
    const out = Fs.mkdtempSync(Path.join(Fs.realpathSync("/tmp"), "postern-dkim-ed-"))
    const generated = await runPostern(["dkim", "keygen", "--domain", "example.test", "--selector", "ed", "--algorithm", "ed25519", "--out", out])
    assert.strictEqual(generated.code, 0, generated.stderr)
    const p = /k=ed25519; p=([A-Za-z0-9+/=]+)/.exec(generated.stdout)?.[1] ?? ""
    assert.strictEqual(Buffer.from(p, "base64").length, 32)
  })
})
