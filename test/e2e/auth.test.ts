/**
 * SMTP AUTH end to end: Python smtplib and swaks against the daemon's submission listeners,
 * with a users file made by `Users.addUser` (what `postern user add` does) while the daemon
 * runs. Authenticated relay, the tarpit on failures, the disconnect after too many, AUTH never
 * before TLS, never on the MX port, and never a password in the event log.
 */
import * as ChildProcess from "node:child_process"
import * as Fs from "node:fs"
import * as Path from "node:path"
import { afterAll, assert, beforeAll, describe, it } from "@effect/vitest"
import * as Users from "../../src/auth/Users.ts"
import type * as Event from "../../src/log/Event.ts"
import { type Daemon, readLog, startDaemon, uniqueToken, waitForMail } from "../support/Daemon.ts"

const password = "correct horse battery staple"

/**
 * One smtplib session on `port`: "starttls" or "implicit" TLS (certificate not checked: the
 * daemon's is self-signed), then each step's (code, text); ["disconnected"] when the server
 * hangs up, ["error", text] for anything else smtplib raises. Each step's duration in seconds
 * is kept in "seconds".
 */
const sessionScript = String.raw`
import base64, json, smtplib, ssl, sys, time
port, tls, steps = int(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
context = ssl.create_default_context()
context.check_hostname = False
context.verify_mode = ssl.CERT_NONE
out, seconds = [], []
try:
    if tls == "implicit":
        s = smtplib.SMTP_SSL("127.0.0.1", port, local_hostname="client.test", timeout=20, context=context)
    else:
        s = smtplib.SMTP("127.0.0.1", port, local_hostname="client.test", timeout=20)
    for step in steps:
        kind = step[0]
        started = time.monotonic()
        if kind == "ehlo":
            code, msg = s.ehlo()
        elif kind == "starttls":
            code, msg = s.starttls(context=context)
        elif kind == "login":
            try:
                code, msg = s.login(step[1], step[2])
            except smtplib.SMTPAuthenticationError as e:
                code, msg = e.smtp_code, e.smtp_error
        elif kind == "plain":
            code, msg = s.docmd("AUTH", "PLAIN " + base64.b64encode(("\0" + step[1] + "\0" + step[2]).encode()).decode())
        elif kind == "raw":
            code, msg = s.docmd(step[1])
        elif kind == "pipeline":
            # Several lines in one write, as a pipelining client sends them; the first reply is kept.
            lines = step[1].split("\n")
            s.send(("\r\n".join(lines) + "\r\n").encode())
            code, msg = s.getreply()
            for _ in lines[1:]:
                s.getreply()
        elif kind == "mail":
            code, msg = s.mail(step[1])
        elif kind == "rcpt":
            code, msg = s.rcpt(step[1])
        elif kind == "data":
            code, msg = s.data(step[1].encode())
        seconds.append(time.monotonic() - started)
        out.append([code, msg.decode(errors="replace")])
    s.quit()
except smtplib.SMTPServerDisconnected:
    out.append(["disconnected"])
except Exception as e:
    out.append(["error", repr(e)])
print(json.dumps({"replies": out, "seconds": seconds}))
`

type Step =
  | readonly ["ehlo"]
  | readonly ["starttls"]
  | readonly ["login" | "plain", string, string]
  | readonly ["raw" | "pipeline" | "mail" | "rcpt" | "data", string]
type Replies = ReadonlyArray<readonly [number, string] | readonly ["disconnected"] | readonly ["error", string]>

const smtplib = (port: number, tls: "starttls" | "implicit", steps: ReadonlyArray<Step>) =>
  new Promise<{ replies: Replies; seconds: ReadonlyArray<number> }>((resolve, reject) => {
    ChildProcess.execFile("python3", ["-c", sessionScript, String(port), tls, JSON.stringify(steps)], { timeout: 60_000 }, (error, stdout, stderr) => {
      if (error !== null) return reject(new Error(`${error.message}\n${stderr}`))
      resolve(JSON.parse(stdout) as { replies: Replies; seconds: ReadonlyArray<number> })
    })
  })

const code = (reply: Replies[number] | undefined): string =>
  reply === undefined ? "none" : reply[0] === "disconnected" ? "disconnected" : reply[0] === "error" ? `error ${reply[1]}` : `${reply[0]} ${reply[1].split(/\s/)[0]}`

const message = (token: string) => `From: alice@example.test\r\nSubject: ${token}\r\n\r\n${token}\r\n`

describe("SMTP AUTH through real clients", () => {
  let daemon: Daemon
  let usersFile = ""

  beforeAll(async () => {
    daemon = await startDaemon({
      extraListeners: [{ role: "submissions" }],
      auth: { failureDelay: "300ms" },
      policySource: `{ rules: { rcpt: [relay({ internalNetworks: ["127.0.0.3/32"] })] } }`
    })
    // Added while the daemon runs: the users file is read again when it changes.
    usersFile = Path.join(daemon.stateDir, "users")
    await Users.addUser(usersFile, "Alice", password)
  })

  afterAll(async () => {
    await daemon?.dispose()
  })

  it("AUTH is advertised only after STARTTLS on submission, and never on the MX port", async () => {
    const submission = await smtplib(daemon.ports.submission, "starttls", [["ehlo"], ["starttls"], ["ehlo"]])
    assert.notInclude(submission.replies[0]?.[1] ?? "", "AUTH")
    assert.include(submission.replies[2]?.[1] ?? "", "AUTH PLAIN LOGIN")
    const mx = await smtplib(daemon.ports.smtp, "starttls", [["ehlo"], ["starttls"], ["ehlo"], ["raw", "AUTH PLAIN"]])
    assert.notInclude(mx.replies[2]?.[1] ?? "", "AUTH")
    assert.strictEqual(code(mx.replies[3]), "503 5.5.1")
  })

  it("AUTH before STARTTLS on submission gets 530 5.7.0 (the listener requires TLS)", async () => {
    const result = await smtplib(daemon.ports.submission, "starttls", [["ehlo"], ["raw", "AUTH PLAIN"]])
    assert.strictEqual(code(result.replies[1]), "530 5.7.0")
  })

  it("smtplib logs in (PLAIN, name in any case) and relays to another domain: 235 2.7.0, ESMTPSA in the trace", async () => {
    const token = uniqueToken("auth-relay")
    const result = await smtplib(daemon.ports.submission, "starttls", [
      ["ehlo"],
      ["starttls"],
      ["ehlo"],
      ["login", "ALICE", password],
      ["mail", "alice@example.test"],
      ["rcpt", "carol@elsewhere.test"],
      ["rcpt", "bob@example.test"],
      ["data", message(token)]
    ])
    assert.deepStrictEqual(result.replies.slice(3).map(code), ["235 2.7.0", "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.0.0"])
    const mail = await waitForMail(daemon, "example.test", "bob", token)
    assert.match(mail.text, /with ESMTPSA id /)
    const events = await readLog(daemon.logDir)
    const succeeded = events.filter((e): e is Event.AuthSucceeded => e._tag === "AuthSucceeded")
    assert.deepStrictEqual(succeeded.map((e) => [e.mechanism, e.user]).at(-1), ["PLAIN", "alice"])
  })

  it("swaks with AUTH LOGIN on the implicit TLS port", async () => {
    const token = uniqueToken("auth-swaks")
    const port = daemon.ports.extra[0] ?? 0
    const result = await new Promise<{ code: number; stdout: string }>((resolve) => {
      ChildProcess.execFile(
        "swaks",
        [
          "--server", `127.0.0.1:${port}`, "--tlsc", "--helo", "client.test",
          "--auth", "LOGIN", "--auth-user", "alice", "--auth-password", password,
          "--from", "alice@example.test", "--to", "carol@elsewhere.test,bob@example.test",
          "--header", `Subject: ${token}`, "--body", token
        ],
        { timeout: 30_000 },
        (error, stdout) => resolve({ code: error === null ? 0 : Number(error.code ?? 1), stdout })
      )
    })
    assert.strictEqual(result.code, 0, result.stdout)
    // swaks marks lines read inside TLS with "<~".
    assert.match(result.stdout, /<~ {1,2}334 VXNlcm5hbWU6/)
    assert.match(result.stdout, /<~ {1,2}334 UGFzc3dvcmQ6/)
    assert.match(result.stdout, /<~ {1,2}235 2\.7\.0 Authentication successful/)
    await waitForMail(daemon, "example.test", "bob", token)
  })

  it("without AUTH, a client that is not internal may not relay even after STARTTLS: 554 5.7.1", async () => {
    const result = await smtplib(daemon.ports.submission, "starttls", [
      ["ehlo"],
      ["starttls"],
      ["ehlo"],
      ["mail", "alice@example.test"],
      ["rcpt", "carol@elsewhere.test"]
    ])
    assert.strictEqual(code(result.replies[4]), "554 5.7.1")
  })

  it("a wrong password gets 535 5.7.8 after a delay that doubles; the third failure ends the session with 421 4.7.0", async () => {
    const result = await smtplib(daemon.ports.submission, "starttls", [
      ["ehlo"],
      ["starttls"],
      ["ehlo"],
      ["plain", "alice", "wrong one"],
      ["plain", "nobody", password],
      ["plain", "alice", "wrong again"],
      ["raw", "NOOP"]
    ])
    // The 421 comes right after the third 535; smtplib reads it as the NOOP's reply, then finds
    // the connection closed.
    assert.deepStrictEqual(result.replies.slice(3).map(code), ["535 5.7.8", "535 5.7.8", "535 5.7.8", "421 4.7.0", "disconnected"])
    const [first = 0, second = 0, third = 0] = result.seconds.slice(3)
    assert.isAtLeast(first, 0.29)
    assert.isAtLeast(second, 0.59)
    assert.isAtLeast(third, 1.19)
    const events = await readLog(daemon.logDir)
    const failed = events.filter((e): e is Event.AuthFailed => e._tag === "AuthFailed")
    assert.deepStrictEqual(failed.slice(-3).map((e) => e.failures), [1, 2, 3])
    const closed = events.filter((e): e is Event.SessionClosed => e._tag === "SessionClosed" && e.reason === "auth-failures")
    assert.isAbove(closed.length, 0)
  })

  it("credentials pipelined after an AUTH that is refused (on the MX port) are logged as ***, not in base64", async () => {
    const user = Buffer.from("alice").toString("base64")
    const secret = Buffer.from("pipelined secret").toString("base64")
    const result = await smtplib(daemon.ports.smtp, "starttls", [["ehlo"], ["pipeline", `AUTH LOGIN\n${user}\n${secret}`]])
    assert.strictEqual(code(result.replies[1]), "503 5.5.1")
    const all = Buffer.concat(Fs.readdirSync(Path.join(daemon.logDir, "w0")).map((name) => Fs.readFileSync(Path.join(daemon.logDir, "w0", name))))
    assert.strictEqual(all.indexOf(Buffer.from(secret)), -1)
    assert.strictEqual(all.indexOf(Buffer.from(user)), -1)
  })

  it("the event log never holds a password, in clear or in base64; the AUTH line is recorded as AUTH PLAIN ***", async () => {
    const files = Fs.readdirSync(Path.join(daemon.logDir, "w0")).map((name) => Fs.readFileSync(Path.join(daemon.logDir, "w0", name)))
    const all = Buffer.concat(files)
    for (const secret of [password, "wrong one", Buffer.from(`\0alice\0${password}`).toString("base64"), Buffer.from(password).toString("base64")]) {
      assert.strictEqual(all.indexOf(Buffer.from(secret)), -1, `the log holds ${JSON.stringify(secret)}`)
    }
    const lines = (await readLog(daemon.logDir)).filter((e): e is Event.CommandReceived => e._tag === "CommandReceived").map((e) => e.line)
    assert.include(lines, "AUTH PLAIN ***")
    assert.notInclude(Fs.readFileSync(usersFile, "utf8"), password)
  })

  it("replay --verify reproduces every reply of these sessions, AUTH exchanges included", async () => {
    const verify = await daemon.replay([daemon.logDir, "--verify"])
    assert.strictEqual(verify.code, 0, verify.stdout + verify.stderr)
  })
})
