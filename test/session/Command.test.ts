import { assert, describe, it } from "@effect/vitest"
import { Arbitrary, Schema } from "effect"
import * as Address from "../../src/session/Address.ts"
import * as Command from "../../src/session/Command.ts"
import * as Reply from "../../src/session/Reply.ts"

const plain: Command.ParseContext = { smtputf8: false }
const utf8: Command.ParseContext = { smtputf8: true }

const ok = (command: Command.Command): Command.ParseResult => ({ _tag: "Parsed", command })
const bad = (verb: Command.Verb, code: number, enhanced: string, text: string): Command.ParseResult => ({
  _tag: "Invalid",
  verb,
  reply: Reply.make(code, enhanced, text)
})
const unknown = (code: number, enhanced: string, text: string): Command.ParseResult => ({
  _tag: "Unknown",
  reply: Reply.make(code, enhanced, text)
})

const mb = Address.mailbox
const params = (p: Partial<Command.MailParameters> = {}): Command.MailParameters => ({
  size: undefined,
  body: undefined,
  smtputf8: false,
  ...p
})
const mail = (from: Address.ReversePath, p: Partial<Command.MailParameters> = {}) =>
  ok({ _tag: "Mail", from, parameters: params(p) })
const rcpt = (to: Address.ForwardPath) => ok({ _tag: "Rcpt", to })

const notRecognized = unknown(500, "5.5.2", "Error: command not recognized")
const control = (verb: Command.Verb) => bad(verb, 501, "5.5.2", "Error: control characters not allowed")
const mailSyntax = bad("Mail", 501, "5.5.4", "Syntax: MAIL FROM:<address>")
const rcptSyntax = bad("Rcpt", 501, "5.5.4", "Syntax: RCPT TO:<address>")
const badSender = bad("Mail", 501, "5.1.7", "Bad sender address syntax")
const badRecipient = bad("Rcpt", 501, "5.1.3", "Bad recipient address syntax")
const mailNeedsUtf8 = bad("Mail", 553, "5.6.7", "SMTPUTF8 is required for a non-ASCII address")
const rcptNeedsUtf8 = bad("Rcpt", 553, "5.6.7", "SMTPUTF8 is required for a non-ASCII address")
const badSize = bad("Mail", 501, "5.5.4", "Bad SIZE parameter")
const badBody = bad("Mail", 501, "5.5.4", "Bad BODY parameter")
const duplicate = bad("Mail", 501, "5.5.4", "Duplicate parameter")
const unsupported = (verb: Command.Verb, keyword: string) => bad(verb, 555, "5.5.4", `Unsupported option: ${keyword}`)
const bdatSyntax = bad("Bdat", 501, "5.5.4", "Syntax: BDAT size [LAST]")
const authSyntax = bad("Auth", 501, "5.5.4", "Syntax: AUTH mechanism")

/** A domain of exactly n characters made of labels of at most 63. */
const domainOfLength = (n: number): string => {
  let out = ""
  let remaining = n
  while (remaining > 63) {
    out += "a".repeat(62) + "."
    remaining -= 63
  }
  return out + "b".repeat(remaining)
}
const local64 = "l".repeat(64)

type Row = readonly [line: string, expected: Command.ParseResult, context?: Command.ParseContext, name?: string]

const table = (title: string, rows: ReadonlyArray<Row>) =>
  describe(title, () => {
    for (const [line, expected, context = plain, name] of rows) {
      const label = `${name ?? JSON.stringify(line).slice(0, 90)}${context.smtputf8 ? " (smtputf8)" : ""}`
      it(label, () => {
        assert.deepStrictEqual(Command.parse(line, context), expected)
      })
    }
  })

table("verbs and unknown lines", [
  ["", notRecognized],
  ["   ", notRecognized],
  ["FOO", notRecognized],
  ["FOO BAR", notRecognized],
  ["HELLO there", notRecognized],
  ["MAILFROM:<a@example.com>", notRecognized],
  ["MAIL:FROM:<a@example.com>", notRecognized],
  ["DATAX", notRecognized],
  ["STARTTLSX", notRecognized],
  ["XEXCH50 1 2", notRecognized],
  ["ΕΗLO greek.example", notRecognized],
  ["NOOP", ok({ _tag: "Noop" })],
  ["noop", ok({ _tag: "Noop" })],
  ["NoOp anything at all", ok({ _tag: "Noop" })],
  ["  NOOP", ok({ _tag: "Noop" }), plain, "leading spaces before the verb"],
  ["HELP", ok({ _tag: "Help", argument: "" })],
  ["help mail", ok({ _tag: "Help", argument: "mail" })],
  ["HELP   RCPT  ", ok({ _tag: "Help", argument: "RCPT" })]
])

table("control characters", [
  ["\u0000", unknown(501, "5.5.2", "Error: control characters not allowed")],
  ["NOOP\u0001", unknown(501, "5.5.2", "Error: control characters not allowed")],
  ["DATA\u007f", unknown(501, "5.5.2", "Error: control characters not allowed")],
  ["NOOP \t", control("Noop")],
  ["EHLO a\tb", control("Ehlo")],
  ["MAIL FROM:<a\u0000@example.com>", control("Mail")],
  ["RCPT TO:<a@example.com>\r", control("Rcpt")],
  ["rcpt TO:<a@example.com>\n", control("Rcpt")],
  ["VRFY \u001b[31m", control("Vrfy")],
  ["HELP \u007f", control("Help")]
])

table("EHLO and HELO", [
  ["EHLO client.example", ok({ _tag: "Ehlo", domain: "client.example" })],
  ["ehlo client.example", ok({ _tag: "Ehlo", domain: "client.example" })],
  ["eHlO Client.Example", ok({ _tag: "Ehlo", domain: "Client.Example" })],
  ["EHLO [192.0.2.1]", ok({ _tag: "Ehlo", domain: "[192.0.2.1]" })],
  ["EHLO [IPv6:2001:db8::1]", ok({ _tag: "Ehlo", domain: "[IPv6:2001:db8::1]" })],
  ["EHLO    spaced.example   ", ok({ _tag: "Ehlo", domain: "spaced.example" })],
  ["EHLO my_host", ok({ _tag: "Ehlo", domain: "my_host" }), plain, "lenient: underscore"],
  ["EHLO client.example extra", ok({ _tag: "Ehlo", domain: "client.example extra" }), plain, "lenient: extra words"],
  ["EHLO", bad("Ehlo", 501, "5.5.4", "Syntax: EHLO hostname")],
  ["EHLO    ", bad("Ehlo", 501, "5.5.4", "Syntax: EHLO hostname")],
  ["HELO client.example", ok({ _tag: "Helo", domain: "client.example" })],
  ["helo x", ok({ _tag: "Helo", domain: "x" })],
  ["HELO", bad("Helo", 501, "5.5.4", "Syntax: HELO hostname")],
  ["helo  ", bad("Helo", 501, "5.5.4", "Syntax: HELO hostname")]
])

table("commands without arguments", [
  ["DATA", ok({ _tag: "Data" })],
  ["data", ok({ _tag: "Data" })],
  ["DATA   ", ok({ _tag: "Data" })],
  ["DATA now", bad("Data", 501, "5.5.4", "Syntax: DATA")],
  ["RSET", ok({ _tag: "Rset" })],
  ["rSeT", ok({ _tag: "Rset" })],
  ["RSET x", bad("Rset", 501, "5.5.4", "Syntax: RSET")],
  ["QUIT", ok({ _tag: "Quit" })],
  ["quit ", ok({ _tag: "Quit" })],
  ["QUIT now", bad("Quit", 501, "5.5.4", "Syntax: QUIT")],
  ["STARTTLS", ok({ _tag: "Starttls" })],
  ["starttls", ok({ _tag: "Starttls" })],
  ["STARTTLS NOOP", bad("Starttls", 501, "5.5.4", "Syntax: STARTTLS")]
])

table("VRFY and EXPN", [
  ["VRFY user", ok({ _tag: "Vrfy", argument: "user" })],
  ["vrfy <user@example.com>", ok({ _tag: "Vrfy", argument: "<user@example.com>" })],
  ["VRFY  John Smith  ", ok({ _tag: "Vrfy", argument: "John Smith" })],
  ["VRFY", bad("Vrfy", 501, "5.5.4", "Syntax: VRFY address")],
  ["VRFY   ", bad("Vrfy", 501, "5.5.4", "Syntax: VRFY address")],
  ["EXPN staff", ok({ _tag: "Expn", argument: "staff" })],
  ["expn Staff List", ok({ _tag: "Expn", argument: "Staff List" })],
  ["EXPN", bad("Expn", 501, "5.5.4", "Syntax: EXPN address")]
])

table("BDAT", [
  ["BDAT 1000", ok({ _tag: "Bdat", size: 1000, last: false })],
  ["bdat 1000", ok({ _tag: "Bdat", size: 1000, last: false })],
  ["BDAT 0 LAST", ok({ _tag: "Bdat", size: 0, last: true })],
  ["BDAT 12 last", ok({ _tag: "Bdat", size: 12, last: true })],
  ["Bdat 12 LaSt", ok({ _tag: "Bdat", size: 12, last: true })],
  ["BDAT   12    LAST   ", ok({ _tag: "Bdat", size: 12, last: true })],
  ["BDAT 007", ok({ _tag: "Bdat", size: 7, last: false })],
  ["BDAT 999999999999999", ok({ _tag: "Bdat", size: 999999999999999, last: false }), plain, "15 digits"],
  ["BDAT 1000000000000000", bdatSyntax, plain, "16 digits"],
  ["BDAT", bdatSyntax],
  ["BDAT LAST", bdatSyntax],
  ["BDAT -1", bdatSyntax],
  ["BDAT +1", bdatSyntax],
  ["BDAT 1x", bdatSyntax],
  ["BDAT 0x10", bdatSyntax],
  ["BDAT 1.5", bdatSyntax],
  ["BDAT 10 LAST extra", bdatSyntax],
  ["BDAT 10 FIRST", bdatSyntax],
  ["BDAT 10 LASTX", bdatSyntax],
  ["BDAT 10 LAS", bdatSyntax],
  ["BDAT 10 20", bdatSyntax]
])

table("AUTH", [
  ["AUTH PLAIN", ok({ _tag: "Auth", mechanism: "PLAIN", initialResponse: undefined })],
  ["auth plain", ok({ _tag: "Auth", mechanism: "PLAIN", initialResponse: undefined })],
  ["AUTH plain dGVzdAB0ZXN0AHRlc3Q=", ok({ _tag: "Auth", mechanism: "PLAIN", initialResponse: "dGVzdAB0ZXN0AHRlc3Q=" })],
  ["AUTH PLAIN =", ok({ _tag: "Auth", mechanism: "PLAIN", initialResponse: "=" })],
  ["AUTH  LOGIN   ", ok({ _tag: "Auth", mechanism: "LOGIN", initialResponse: undefined })],
  ["AUTH scram-sha-256", ok({ _tag: "Auth", mechanism: "SCRAM-SHA-256", initialResponse: undefined })],
  ["AUTH X_OAUTH2", ok({ _tag: "Auth", mechanism: "X_OAUTH2", initialResponse: undefined })],
  ["AUTH", authSyntax],
  ["AUTH   ", authSyntax],
  ["AUTH PLAIN abc def", authSyntax],
  ["AUTH PL@IN", authSyntax],
  ["AUTH " + "A".repeat(21), authSyntax, plain, "mechanism of 21 characters"]
])

table("MAIL", [
  ["MAIL FROM:<user@example.com>", mail(mb("user", "example.com"))],
  ["mail from:<user@example.com>", mail(mb("user", "example.com"))],
  ["Mail From:<User@Example.COM>", mail(mb("User", "example.com"))],
  ["MAIL FROM: <user@example.com>", mail(mb("user", "example.com")), plain, "one space after the colon"],
  ["MAIL FROM:    <user@example.com>", mail(mb("user", "example.com")), plain, "spaces after the colon"],
  ["MAIL   FROM:<user@example.com>   ", mail(mb("user", "example.com")), plain, "spaces after verb and at end"],
  ["MAIL FROM:<>", mail(Address.nullPath)],
  ["MAIL FROM:<> SIZE=100 BODY=8BITMIME", mail(Address.nullPath, { size: 100, body: "8BITMIME" })],
  ["MAIL FROM:<@a.example,@b.example:user@c.example>", mail(mb("user", "c.example")), plain, "source route"],
  ["MAIL FROM:<user@example.com> SIZE=0", mail(mb("user", "example.com"), { size: 0 })],
  ["MAIL FROM:<user@example.com> size=12345", mail(mb("user", "example.com"), { size: 12345 })],
  ["MAIL FROM:<a@example.com> SIZE=9007199254740991", mail(mb("a", "example.com"), { size: Number.MAX_SAFE_INTEGER })],
  ["MAIL FROM:<a@example.com> SIZE=9007199254740993", mail(mb("a", "example.com"), { size: Number.MAX_SAFE_INTEGER })],
  [
    "MAIL FROM:<a@example.com> SIZE=" + "9".repeat(400),
    mail(mb("a", "example.com"), { size: Number.MAX_SAFE_INTEGER }),
    plain,
    "SIZE of 400 digits clamps"
  ],
  ["MAIL FROM:<a@example.com> BODY=7BIT", mail(mb("a", "example.com"), { body: "7BIT" })],
  ["MAIL FROM:<a@example.com> BODY=8BITMIME", mail(mb("a", "example.com"), { body: "8BITMIME" })],
  ["MAIL FROM:<a@example.com> body=8bitmime", mail(mb("a", "example.com"), { body: "8BITMIME" })],
  ["MAIL FROM:<a@example.com> BODY=BINARYMIME", mail(mb("a", "example.com"), { body: "BINARYMIME" })],
  ["MAIL FROM:<a@example.com> SMTPUTF8", mail(mb("a", "example.com"), { smtputf8: true })],
  ["MAIL FROM:<a@example.com> smtputf8", mail(mb("a", "example.com"), { smtputf8: true })],
  [
    "MAIL FROM:<a@example.com>  SIZE=1   BODY=7BIT  SMTPUTF8  ",
    mail(mb("a", "example.com"), { size: 1, body: "7BIT", smtputf8: true })
  ],
  ["MAIL FROM:<a@example.com> SMTPUTF8 BODY=8BITMIME SIZE=5", mail(mb("a", "example.com"), { size: 5, body: "8BITMIME", smtputf8: true })],
  // The command's own syntax
  ["MAIL", mailSyntax],
  ["MAIL   ", mailSyntax],
  ["MAIL FROM", mailSyntax],
  ["MAIL FROM:", mailSyntax],
  ["MAIL FROM:   ", mailSyntax],
  ["MAIL FROM <a@example.com>", mailSyntax],
  ["MAIL FROM<a@example.com>", mailSyntax],
  ["MAIL FROM :<a@example.com>", mailSyntax],
  ["MAIL FROMX:<a@example.com>", mailSyntax],
  ["MAIL TO:<a@example.com>", mailSyntax],
  ["MAIL <a@example.com>", mailSyntax],
  // The address
  ["MAIL FROM:a@example.com", badSender, plain, "missing brackets"],
  ["MAIL FROM:<a@example.com", badSender, plain, "missing closing bracket"],
  ["MAIL FROM:a@example.com>", badSender],
  ["MAIL FROM:<a@example.com>SIZE=1", badSender, plain, "no space before parameters"],
  ["MAIL FROM:<a@example.com>>", badSender],
  ["MAIL FROM:<a@example.com> <b@example.com>", mailSyntax, plain, "a second path is not a parameter"],
  ["MAIL FROM:<Postmaster>", badSender],
  ["MAIL FROM:<a b@example.com>", badSender],
  ["MAIL FROM:<@a.example:>", badSender],
  // Parameters
  ["MAIL FROM:<a@example.com> SIZE", badSize],
  ["MAIL FROM:<a@example.com> SIZE=", badSize],
  ["MAIL FROM:<a@example.com> SIZE=abc", badSize],
  ["MAIL FROM:<a@example.com> SIZE=-1", badSize],
  ["MAIL FROM:<a@example.com> SIZE=1.5", badSize],
  ["MAIL FROM:<a@example.com> SIZE=0x10", badSize],
  ["MAIL FROM:<a@example.com> SIZE=1e3", badSize],
  ["MAIL FROM:<a@example.com> BODY", badBody],
  ["MAIL FROM:<a@example.com> BODY=", badBody],
  ["MAIL FROM:<a@example.com> BODY=9BIT", badBody],
  ["MAIL FROM:<a@example.com> BODY=8BIT", badBody],
  ["MAIL FROM:<a@example.com> SMTPUTF8=YES", bad("Mail", 501, "5.5.4", "Bad SMTPUTF8 parameter")],
  ["MAIL FROM:<a@example.com> SIZE=1 SIZE=2", duplicate],
  ["MAIL FROM:<a@example.com> SIZE=1 size=1", duplicate],
  ["MAIL FROM:<a@example.com> BODY=7BIT body=8BITMIME", duplicate],
  ["MAIL FROM:<a@example.com> SMTPUTF8 SMTPUTF8", duplicate],
  ["MAIL FROM:<a@example.com> SIZE=x SIZE=1", badSize, plain, "first error wins"],
  ["MAIL FROM:<a@example.com> RET=FULL", unsupported("Mail", "RET")],
  ["MAIL FROM:<a@example.com> envid=QQ314159", unsupported("Mail", "ENVID")],
  ["MAIL FROM:<a@example.com> AUTH=<>", mail(mb("a", "example.com"))],
  ["MAIL FROM:<a@example.com> AUTH=a+40example.com SIZE=10", mail(mb("a", "example.com"), { size: 10 }), plain, "AUTH= (RFC 4954 5) is read and dropped"],
  ["MAIL FROM:<a@example.com> AUTH=<> AUTH=<>", duplicate],
  ["MAIL FROM:<a@example.com> AUTH", unsupported("Mail", "AUTH")],
  ["MAIL FROM:<a@example.com> X-FOO", unsupported("Mail", "X-FOO")],
  ["MAIL FROM:<a@example.com> SIZE=1 FOO=bar", unsupported("Mail", "FOO")],
  ["MAIL FROM:<a@example.com> =x", mailSyntax],
  ["MAIL FROM:<a@example.com> -X", mailSyntax],
  ["MAIL FROM:<a@example.com> SI_ZE=1", mailSyntax]
])

table("RCPT", [
  ["RCPT TO:<user@example.com>", rcpt(mb("user", "example.com"))],
  ["rcpt to:<user@example.com>", rcpt(mb("user", "example.com"))],
  ["RcPt To:<user@example.com>", rcpt(mb("user", "example.com"))],
  ["RCPT TO: <user@example.com>", rcpt(mb("user", "example.com"))],
  ["RCPT   TO:   <user@example.com>   ", rcpt(mb("user", "example.com"))],
  ["RCPT TO:<Postmaster>", rcpt(Address.postmaster)],
  ["RCPT TO:<postmaster>", rcpt(Address.postmaster)],
  ["RCPT TO:<POSTMASTER>", rcpt(Address.postmaster)],
  ["RCPT TO:<PostMaster@example.com>", rcpt(mb("PostMaster", "example.com"))],
  ["RCPT TO:<@a.example,@b.example:user@c.example>", rcpt(mb("user", "c.example"))],
  ["RCPT TO:<>", badRecipient, plain, "null path"],
  ["RCPT TO:<Postmaster >", badRecipient],
  ["RCPT TO:<Postmasters>", badRecipient],
  ["RCPT TO:<@a.example:Postmaster>", badRecipient],
  ["RCPT TO:<\"Postmaster\">", badRecipient],
  ["RCPT TO:user@example.com", badRecipient],
  ["RCPT TO:<user@example.com", badRecipient],
  ["RCPT TO:<user@example.com>x", badRecipient],
  ["RCPT", rcptSyntax],
  ["RCPT TO", rcptSyntax],
  ["RCPT TO:", rcptSyntax],
  ["RCPT TO:  ", rcptSyntax],
  ["RCPT TO <user@example.com>", rcptSyntax],
  ["RCPT FROM:<user@example.com>", rcptSyntax],
  ["RCPT <user@example.com>", rcptSyntax],
  ["RCPT TO:<user@example.com> NOTIFY=NEVER", unsupported("Rcpt", "NOTIFY")],
  ["RCPT TO:<user@example.com>  orcpt=rfc822;user@example.com", unsupported("Rcpt", "ORCPT")],
  ["RCPT TO:<Postmaster> SIZE=1", unsupported("Rcpt", "SIZE")],
  ["RCPT TO:<user@example.com> =x", rcptSyntax]
])

/** Valid forward-paths: [text inside RCPT TO:, expected path]. */
const validAddresses: ReadonlyArray<readonly [string, Address.ForwardPath]> = [
  ["<user@example.com>", mb("user", "example.com")],
  ["<User.Name+tag@Example.COM>", mb("User.Name+tag", "example.com")],
  ["<a@b>", mb("a", "b")],
  ["<a@123>", mb("a", "123")],
  ["<a@a-b.c-d.example>", mb("a", "a-b.c-d.example")],
  ["<a@a--b.example>", mb("a", "a--b.example")],
  ["<a@xn--bcher-kva.example>", mb("a", "xn--bcher-kva.example")],
  ["<!#$%&'*+-/=?^_`{|}~@example.com>", mb("!#$%&'*+-/=?^_`{|}~", "example.com")],
  ["<a.b.c@example.com>", mb("a.b.c", "example.com")],
  ["<user%other.example@relay.example>", mb("user%other.example", "relay.example")],
  ["<host!user@example.com>", mb("host!user", "example.com")],
  ["<\"john doe\"@example.com>", mb("john doe", "example.com")],
  ["<\"john\\\"doe\"@example.com>", mb("john\"doe", "example.com")],
  ["<\"a\\\\b\"@example.com>", mb("a\\b", "example.com")],
  ["<\"\\a\\ b\"@example.com>", mb("a b", "example.com")],
  ["<\"a@b\"@example.com>", mb("a@b", "example.com")],
  ["<\"a@b@c\"@example.com>", mb("a@b@c", "example.com")],
  ["<\"a>b\"@example.com>", mb("a>b", "example.com")],
  ["<\"john.doe\"@example.com>", mb("john.doe", "example.com")],
  ["<\".a..b.\"@example.com>", mb(".a..b.", "example.com")],
  ["<\"\"@example.com>", mb("", "example.com")],
  ["<user@[192.0.2.1]>", mb("user", "[192.0.2.1]")],
  ["<user@[0.0.0.0]>", mb("user", "[0.0.0.0]")],
  ["<user@[255.255.255.255]>", mb("user", "[255.255.255.255]")],
  ["<user@[IPv6:2001:db8::1]>", mb("user", "[ipv6:2001:db8::1]")],
  ["<user@[ipv6:2001:DB8::1]>", mb("user", "[ipv6:2001:db8::1]")],
  ["<user@[IPv6:::1]>", mb("user", "[ipv6:::1]")],
  ["<user@[IPv6:::]>", mb("user", "[ipv6:::]")],
  ["<user@[IPv6:1::]>", mb("user", "[ipv6:1::]")],
  ["<user@[IPv6:1:2:3:4:5:6:7:8]>", mb("user", "[ipv6:1:2:3:4:5:6:7:8]")],
  ["<user@[IPv6:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]>", mb("user", "[ipv6:ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]")],
  ["<user@[IPv6:1::2:3:4:5:6]>", mb("user", "[ipv6:1::2:3:4:5:6]")],
  ["<user@[IPv6:1:2:3:4:5:6::]>", mb("user", "[ipv6:1:2:3:4:5:6::]")],
  ["<user@[IPv6:1:2:3:4:5:6:192.0.2.1]>", mb("user", "[ipv6:1:2:3:4:5:6:192.0.2.1]")],
  ["<user@[IPv6:::ffff:192.0.2.1]>", mb("user", "[ipv6:::ffff:192.0.2.1]")],
  ["<user@[IPv6:::192.0.2.1]>", mb("user", "[ipv6:::192.0.2.1]")],
  ["<user@[IPv6:1:2:3:4::192.0.2.1]>", mb("user", "[ipv6:1:2:3:4::192.0.2.1]")],
  ["<user@[IPv6:1::2:3:4:192.0.2.1]>", mb("user", "[ipv6:1::2:3:4:192.0.2.1]")],
  ["<user@[x-tag:anything]>", mb("user", "[x-tag:anything]")],
  ["<user@[tag:a!b~c]>", mb("user", "[tag:a!b~c]")],
  ["<user@[1tag:x:y]>", mb("user", "[1tag:x:y]")],
  ["<@a.example:user@c.example>", mb("user", "c.example")],
  ["<@a.example,@b.example,@c.example:user@d.example>", mb("user", "d.example")],
  [`<${local64}@example.com>`, mb(local64, "example.com")],
  [`<a@${"x".repeat(63)}.example>`, mb("a", `${"x".repeat(63)}.example`)],
  [`<${local64}@${domainOfLength(189)}>`, mb(local64, domainOfLength(189))],
  [`<@r.example:${local64}@${domainOfLength(178)}>`, mb(local64, domainOfLength(178))]
]

/** Invalid forward-paths, each refused with 501 5.1.3 in RCPT and 501 5.1.7 in MAIL. */
const invalidAddresses: ReadonlyArray<string> = [
  "<user>",
  "<user@>",
  "<@example.com>",
  "<user@@example.com>",
  "<.user@example.com>",
  "<user.@example.com>",
  "<us..er@example.com>",
  "<.@example.com>",
  "<user@-example.com>",
  "<user@example-.com>",
  "<user@example.-com>",
  "<user@ex..ample.com>",
  "<user@.example.com>",
  "<user@example.com.>",
  "<user@exa_mple.com>",
  "<user@exa mple.com>",
  "<user name@example.com>",
  "<user@example.com >",
  "< user@example.com>",
  "<user(comment)@example.com>",
  "<user,other@example.com>",
  "<user@example.com,other@example.com>",
  "<user@[192.0.2.256]>",
  "<user@[192.0.2]>",
  "<user@[192.0.2.1.5]>",
  "<user@[192.0.2.]>",
  "<user@[1234.0.2.1]>",
  "<user@[192.0.2.1 ]>",
  "<user@[]>",
  "<user@[192.0.2.1>",
  "<user@192.0.2.1]>",
  "<user@[IPv6:1:2:3:4:5:6:7]>",
  "<user@[IPv6:1:2:3:4:5:6:7:8:9]>",
  "<user@[IPv6:1::2::3]>",
  "<user@[IPv6:12345::]>",
  "<user@[IPv6:1:2:3:4:5:6:7::]>",
  "<user@[IPv6::1]>",
  "<user@[IPv6:1:]>",
  "<user@[IPv6:::1.2.3.256]>",
  "<user@[IPv6:1:2:3:4:5::1.2.3.4]>",
  "<user@[IPv6:1:2:3:4:5:6:7:1.2.3.4]>",
  "<user@[IPv6:1:2:3:4:5:1.2.3.4]>",
  "<user@[IPv6:g::1]>",
  "<user@[IPv6:1.2.3.4]>",
  "<user@[IPv6:]>",
  "<user@[IPv6:::1%eth0]>",
  "<user@[tag:]>",
  "<user@[:x]>",
  "<user@[tag-:x]>",
  "<user@[ta_g:x]>",
  "<user@[tag:a[b]>",
  "<user@[tag:a\\b]>",
  "<user@[tag:a b]>",
  "<\"unterminated@example.com>",
  "<\"a\"b@example.com>",
  "<a\"b\"@example.com>",
  "<\"a\"@>",
  "<\"a\\",
  "<@a.example,user@c.example>",
  "<@a.example:@b.example:user@c.example>",
  "<@a.example;user@c.example>",
  "<@[192.0.2.1]:user@c.example>",
  "<@-a.example:user@c.example>",
  "<@:user@c.example>",
  "<",
  "<user@example.com",
  "<<user@example.com>>",
  "user@example.com",
  "\"user\"@example.com",
  `<${local64}l@example.com>`,
  `<a@${"x".repeat(64)}.example>`,
  `<${local64}@${domainOfLength(190)}>`,
  `<@r.example:${local64}@${domainOfLength(179)}>`,
  `<a@${domainOfLength(256)}>`,
  "<user@example.com\u0085>",
  "<us\u0085er@example.com>"
]

describe("addresses", () => {
  for (const [text, path] of validAddresses) {
    it(`valid ${text.slice(0, 80)}`, () => {
      assert.deepStrictEqual(Command.parse(`RCPT TO:${text}`, plain), rcpt(path))
      assert.deepStrictEqual(Address.parseForwardPath(text), { _tag: "Path", path, end: text.length })
      if (path._tag === "Mailbox") {
        assert.deepStrictEqual(Command.parse(`MAIL FROM:${text}`, plain), mail(path))
      }
    })
  }
  for (const text of invalidAddresses) {
    it(`invalid ${JSON.stringify(text).slice(0, 80)}`, () => {
      assert.deepStrictEqual(Command.parse(`RCPT TO:${text}`, plain), badRecipient)
      assert.deepStrictEqual(Command.parse(`RCPT TO:${text}`, utf8), badRecipient)
      assert.deepStrictEqual(Command.parse(`MAIL FROM:${text} SMTPUTF8`, plain), badSender)
    })
  }
})

describe("path failure reasons", () => {
  const reasons: ReadonlyArray<readonly [string, Address.PathFailure]> = [
    ["<>", "EmptyPath"],
    ["<user>", "Syntax"],
    ["<user@example.com> ", "Syntax"],
    [`<${local64}l@example.com>`, "LocalPartTooLong"],
    [`<\"${"a".repeat(63)}\"@example.com>`, "LocalPartTooLong"],
    [`<a@${domainOfLength(256)}>`, "DomainTooLong"],
    [`<${local64}@${domainOfLength(190)}>`, "PathTooLong"],
    ["<a\uFFFD@example.com>", "InvalidUtf8"],
    ["<\"a\uFFFD\"@example.com>", "InvalidUtf8"],
    ["<\"a\\\uFFFD\"@example.com>", "InvalidUtf8"],
    ["<a@b\uFFFD.example>", "InvalidUtf8"],
    ["<a\uD800@example.com>", "InvalidUtf8"],
    ["<a\uDC00@example.com>", "InvalidUtf8"]
  ]
  for (const [text, reason] of reasons) {
    it(`${JSON.stringify(text).slice(0, 60)} → ${reason}`, () => {
      assert.deepStrictEqual(Address.parseForwardPath(text), { _tag: "Failure", reason })
    })
  }

  it("reverse-path: <> is the null path, <Postmaster> is not a path", () => {
    assert.deepStrictEqual(Address.parseReversePath("<>"), { _tag: "Path", path: Address.nullPath, end: 2 })
    assert.deepStrictEqual(Address.parseReversePath("<Postmaster>"), { _tag: "Failure", reason: "Syntax" })
  })

  it("limits are parameters", () => {
    const domain = domainOfLength(255)
    const relaxed: Address.Limits = { localPart: 64, domain: 255, path: 1000 }
    assert.deepStrictEqual(Address.parseForwardPath(`<a@${domain}>`, relaxed), {
      _tag: "Path",
      path: mb("a", domain),
      end: domain.length + 4
    })
    const strict: Address.Limits = { localPart: 3, domain: 255, path: 256 }
    assert.deepStrictEqual(Address.parseForwardPath("<abcd@example.com>", strict), {
      _tag: "Failure",
      reason: "LocalPartTooLong"
    })
    assert.deepStrictEqual(Command.parse("RCPT TO:<abcd@example.com>", plain, strict), badRecipient)
    assert.deepStrictEqual(Command.parse("MAIL FROM:<abc@example.com>", plain, strict), mail(mb("abc", "example.com")))
  })
})

const intl = (local: string, domain: string): Address.Mailbox => {
  const box = mb(local, domain)
  assert.isTrue(box.international)
  return box
}

table("internationalized addresses", [
  ["RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>", rcpt(intl("δοκιμή", "παράδειγμα.δοκιμή")), utf8],
  ["RCPT TO:<δοκιμή@παράδειγμα.δοκιμή>", rcptNeedsUtf8, plain],
  ["RCPT TO:<用户@example.com>", rcpt(intl("用户", "example.com")), utf8],
  ["RCPT TO:<用户@example.com>", rcptNeedsUtf8],
  ["RCPT TO:<user@Bücher.example>", rcpt(intl("user", "bücher.example")), utf8],
  ["RCPT TO:<user@bücher.example>", rcptNeedsUtf8],
  ["RCPT TO:<😀@example.com>", rcpt(intl("😀", "example.com")), utf8],
  ["RCPT TO:<\"δ x\"@example.com>", rcpt(intl("δ x", "example.com")), utf8],
  ["RCPT TO:<user@-bücher.example>", badRecipient, utf8],
  ["RCPT TO:<user@[192.0.2.1é]>", badRecipient, utf8],
  ["RCPT TO:<@bücher.example:user@example.com>", badRecipient, utf8, "U-label in a source route"],
  ["RCPT TO:<\"a\\é\"@example.com>", badRecipient, utf8, "quoted-pair of a non-ASCII character"],
  ["RCPT TO:<a\uFFFD@example.com>", badRecipient, utf8],
  ["RCPT TO:<a\uFFFD@example.com>", badRecipient, plain, "invalid UTF-8 is a syntax error, not a 553"],
  ["RCPT TO:<user@b\uFFFDcher.example>", badRecipient, utf8],
  ["RCPT TO:<\"a\uFFFD\"@example.com>", badRecipient, utf8],
  ["RCPT TO:<a\uD83D@example.com>", badRecipient, utf8, "lone high surrogate"],
  ["RCPT TO:<" + "é".repeat(32) + "@example.com>", rcpt(intl("é".repeat(32), "example.com")), utf8, "64 octets of é"],
  ["RCPT TO:<" + "é".repeat(33) + "@example.com>", badRecipient, utf8, "66 octets of é"],
  ["RCPT TO:<" + "😀".repeat(16) + "@example.com>", rcpt(intl("😀".repeat(16), "example.com")), utf8, "64 octets of emoji"],
  ["RCPT TO:<" + "😀".repeat(17) + "@example.com>", badRecipient, utf8, "68 octets of emoji"],
  ["MAIL FROM:<δοκιμή@παράδειγμα.δοκιμή> SMTPUTF8", mail(intl("δοκιμή", "παράδειγμα.δοκιμή"), { smtputf8: true })],
  ["MAIL FROM:<δοκιμή@example.com> smtputf8 BODY=8BITMIME", mail(intl("δοκιμή", "example.com"), { smtputf8: true, body: "8BITMIME" })],
  ["MAIL FROM:<δοκιμή@example.com>", mailNeedsUtf8],
  ["MAIL FROM:<δοκιμή@example.com>", mailNeedsUtf8, utf8, "the MAIL line itself must carry SMTPUTF8"],
  ["MAIL FROM:<user@bücher.example> BODY=8BITMIME", mailNeedsUtf8],
  ["MAIL FROM:<δοκιμή@example.com> FOO", unsupported("Mail", "FOO"), plain, "parameter errors come first"],
  ["MAIL FROM:<a\uFFFD@example.com> SMTPUTF8", badSender],
  ["MAIL FROM:<a\uFFFD@example.com>", badSender],
  ["MAIL FROM:<user@example.com> SMTPUTF8", mail(mb("user", "example.com"), { smtputf8: true })]
])

describe("format", () => {
  const rows: ReadonlyArray<readonly [Address.ReversePath | Address.ForwardPath, string]> = [
    [Address.nullPath, ""],
    [Address.postmaster, "Postmaster"],
    [mb("user", "Example.COM"), "user@example.com"],
    [mb("a.b", "example.com"), "a.b@example.com"],
    [mb("john doe", "example.com"), "\"john doe\"@example.com"],
    [mb("a\"b\\c", "example.com"), "\"a\\\"b\\\\c\"@example.com"],
    [mb("a@b", "example.com"), "\"a@b\"@example.com"],
    [mb(".a", "example.com"), "\".a\"@example.com"],
    [mb("a.", "example.com"), "\"a.\"@example.com"],
    [mb("a..b", "example.com"), "\"a..b\"@example.com"],
    [mb("", "example.com"), "\"\"@example.com"],
    [mb("δοκιμή", "παράδειγμα.δοκιμή"), "δοκιμή@παράδειγμα.δοκιμή"],
    [mb("user", "[IPv6:2001:DB8::1]"), "user@[ipv6:2001:db8::1]"]
  ]
  for (const [path, text] of rows) {
    it(JSON.stringify(text), () => {
      assert.strictEqual(Address.format(path), text)
    })
  }

  it("domainOf", () => {
    assert.strictEqual(Address.domainOf(mb("a", "Example.com")), "example.com")
    assert.strictEqual(Address.domainOf(Address.postmaster), undefined)
    assert.strictEqual(Address.domainOf(Address.nullPath), undefined)
    assert.isTrue(Address.isAddressLiteral("[192.0.2.1]"))
    assert.isFalse(Address.isAddressLiteral("example.com"))
  })
})

// ---------------------------------------------------------------------------------------------
// Properties

const pattern = (regex: RegExp) => Schema.String.check(Schema.isPattern(regex))

const localPart = Arbitrary.schema(
  Schema.Union([
    // Dot-strings
    pattern(/^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]{1,10}){0,3}$/),
    // Anything printable: quoted, with escapes where needed (at most 30 chars, so ≤ 64 quoted)
    pattern(/^[\x20-\x7e]{0,30}$/),
    // Non-ASCII, with dots anywhere (quoted when not a dot-string)
    pattern(/^[a-zé漢😀.\- ]{1,12}$/u)
  ])
)

const domain = Arbitrary.schema(
  Schema.Union([
    pattern(/^[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?){0,4}$/),
    pattern(/^([a-zü漢]{1,8}\.){0,2}[a-zü漢]{1,8}$/u),
    pattern(/^\[(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}\]$/),
    pattern(/^\[IPv6:[0-9A-Fa-f]{1,4}(:[0-9A-Fa-f]{1,4}){7}\]$/),
    pattern(/^\[IPv6:([0-9a-f]{1,4}(:[0-9a-f]{1,4}){0,2})?::([0-9a-f]{1,4}(:[0-9a-f]{1,4}){0,2})?\]$/),
    pattern(/^\[IPv6:::ffff:(25[0-5]|1[0-9][0-9]|[1-9]?[0-9])(\.(25[0-5]|1[0-9][0-9]|[1-9]?[0-9])){3}\]$/),
    pattern(/^\[x-[a-z0-9]{1,6}:[!-Z^-~]{1,12}\]$/)
  ])
)

describe("properties", () => {
  it.prop("format() of a valid mailbox parses back to the same mailbox", [localPart, domain], ([local, dom]) => {
    const box = mb(local, dom)
    const line = `RCPT TO:<${Address.format(box)}>`
    assert.deepStrictEqual(Command.parse(line, utf8), rcpt(box))
    const again = Command.parse(`MAIL FROM:<${Address.format(box)}> SMTPUTF8`, plain)
    assert.deepStrictEqual(again, mail(box, { smtputf8: true }))
  }, { arbitrary: { runs: 500 } })

  it.prop("parse is total on arbitrary lines", [Schema.String], ([tail]) => {
    for (const prefix of ["", "MAIL FROM:<", "RCPT TO:<", "RCPT TO:<\"", "MAIL FROM:<a@[IPv6:", "BDAT ", "EHLO "]) {
      const result = Command.parse(prefix + tail, utf8)
      assert.include(["Parsed", "Invalid", "Unknown"], result._tag)
      if (result._tag !== "Parsed") assert.isAtLeast(result.reply.code, 500)
    }
  }, { arbitrary: { runs: 300 } })

  it("rejects pathological 400 kB lines (a quadratic parser would hit the test timeout)", () => {
    const n = 200_000
    const lines = [
      "MAIL FROM:<" + "a.".repeat(n),
      "MAIL FROM:<\"" + "\\a".repeat(n),
      "RCPT TO:<a@" + "a-".repeat(n),
      "RCPT TO:<a@[" + "1:".repeat(n) + "]>",
      "RCPT TO:<" + "@a,".repeat(n),
      "MAIL FROM:<a@b>" + " SIZE=1".repeat(n),
      "MAIL FROM:<a@b> " + "=".repeat(n),
      "BDAT " + "1".repeat(n)
    ]
    for (const line of lines) {
      const result = Command.parse(line, utf8)
      assert.notStrictEqual(result._tag, "Parsed", line.slice(0, 40))
    }
  })
})
