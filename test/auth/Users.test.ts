import { afterEach, assert, beforeEach, describe, it } from "@effect/vitest"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Users from "../../src/auth/Users.ts"

let directory = ""

beforeEach(async () => {
  directory = await Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-users-"))
})

afterEach(async () => {
  await Fs.rm(directory, { recursive: true, force: true })
})

const rejection = async (promise: Promise<unknown>): Promise<Users.UsersError> => {
  try {
    await promise
  } catch (error) {
    assert.instanceOf(error, Users.UsersError)
    return error
  }
  return assert.fail("expected a rejection")
}

/** A well-formed hash with a fixed salt, for the parsing tests (no scrypt needed). */
const sampleHash = "$scrypt$ln=14,r=8,p=1$i7LpbSHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCA"

describe("hashPassword / verifyPassword", () => {
  it("round trip: the password verifies, another does not", async () => {
    const encoded = await Users.hashPassword("correct horse")
    assert.match(encoded, /^\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/)
    assert.isTrue(await Users.verifyPassword("correct horse", encoded))
    assert.isFalse(await Users.verifyPassword("correct horsE", encoded))
    assert.isFalse(await Users.verifyPassword("", encoded))
  })

  it("a fresh salt each time", async () => {
    const [a, b] = await Promise.all([Users.hashPassword("same"), Users.hashPassword("same")])
    assert.notStrictEqual(a, b)
  })

  it("non-ASCII passwords (UTF-8)", async () => {
    const encoded = await Users.hashPassword("pässwörd ✉")
    assert.isTrue(await Users.verifyPassword("pässwörd ✉", encoded))
    assert.isFalse(await Users.verifyPassword("passwort ✉", encoded))
  })

  it("uses the cost recorded in the hash, padded base64 accepted", async () => {
    // A cheap hash made elsewhere: N = 2^4, r = 1, 16-byte key, salt with base64 padding.
    const key = Crypto.scryptSync("secret", "saltsaltsaltsalt", 16, { N: 16, r: 1, p: 1 })
    const salt = Buffer.from("saltsaltsaltsalt").toString("base64")
    const encoded = `$scrypt$ln=4,r=1,p=1$${salt}$${key.toString("base64")}`
    assert.isTrue(salt.endsWith("="))
    assert.isTrue(await Users.verifyPassword("secret", encoded))
    assert.isFalse(await Users.verifyPassword("secreT", encoded))
  })

  const malformed: ReadonlyArray<readonly [string, string]> = [
    ["empty", ""],
    ["not scrypt", "$2b$10$abcdefghijklmnopqrstuuJ0LGx6ZzUp6s6v1k6s6v1k6s6v1k6s6"],
    ["plain text", "secret"],
    ["missing hash", "$scrypt$ln=14,r=8,p=1$i7LpbSHLeFifjxGUogAykQ"],
    ["empty hash", "$scrypt$ln=14,r=8,p=1$i7LpbSHLeFifjxGUogAykQ$"],
    ["missing parameter", "$scrypt$ln=14,r=8$i7LpbSHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCA"],
    ["ln 0", "$scrypt$ln=0,r=8,p=1$i7LpbSHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCA"],
    ["ln too large", "$scrypt$ln=40,r=8,p=1$i7LpbSHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCA"],
    ["memory too large", "$scrypt$ln=20,r=32,p=1$i7LpbSHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCA"],
    ["r 0", "$scrypt$ln=14,r=0,p=1$i7LpbSHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCA"],
    ["negative p", "$scrypt$ln=14,r=8,p=-1$i7LpbSHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCA"],
    ["salt not base64", "$scrypt$ln=14,r=8,p=1$i7Lp*SHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCA"],
    ["hash not base64", "$scrypt$ln=14,r=8,p=1$i7LpbSHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSC!"],
    ["hash not canonical base64", "$scrypt$ln=14,r=8,p=1$i7LpbSHLeFifjxGUogAykQ$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCB"],
    ["salt too short", "$scrypt$ln=14,r=8,p=1$aWE$uxeVX1+FzhGqcIMay+S/1CP2MQRutBYCtQaTlYNtSCA"],
    ["hash too short", "$scrypt$ln=14,r=8,p=1$i7LpbSHLeFifjxGUogAykQ$uxeVX1+F"],
    ["extra field", `${sampleHash}$extra`],
    ["trailing space", `${sampleHash} `]
  ]

  for (const [label, encoded] of malformed) {
    it(`malformed (${label}): false, no rejection`, async () => {
      assert.isFalse(Users.isEncodedPassword(encoded))
      assert.isFalse(await Users.verifyPassword("anything", encoded))
    })
  }

  it("the sample hash used below is well-formed", () => {
    assert.isTrue(Users.isEncodedPassword(sampleHash))
  })
})

describe("canonicalName", () => {
  it("lower-cases valid names", () => {
    assert.strictEqual(Users.canonicalName("Alice"), "alice")
    assert.strictEqual(Users.canonicalName("ALICE@Example.COM"), "alice@example.com")
    assert.strictEqual(Users.canonicalName("x".repeat(64)), "x".repeat(64))
    assert.strictEqual(Users.canonicalName("😀".repeat(64)), "😀".repeat(64))
  })

  const invalid: ReadonlyArray<readonly [string, string]> = [
    ["empty", ""],
    ["65 characters", "x".repeat(65)],
    ["colon", "al:ice"],
    ["space", "al ice"],
    ["tab", "al\tice"],
    ["no-break space", "al\u00a0ice"],
    ["newline", "alice\n"],
    ["NUL", "al\u0000ice"],
    ["DEL", "al\u007fice"],
    ["lone surrogate", "al\ud800ice"],
    ["leading #", "#alice"]
  ]
  for (const [label, name] of invalid) {
    it(`refuses ${label}`, () => {
      assert.isUndefined(Users.canonicalName(name))
    })
  }
})

describe("parseUsersFile / formatUsersFile", () => {
  it("round trip, sorted, trailing newline", () => {
    const users = new Map([["carol", sampleHash], ["alice", sampleHash], ["bob@example.com", sampleHash]])
    const text = Users.formatUsersFile(users)
    assert.strictEqual(text, `alice:${sampleHash}\nbob@example.com:${sampleHash}\ncarol:${sampleHash}\n`)
    const parsed = Users.parseUsersFile(text)
    assert.deepStrictEqual(parsed.problems, [])
    assert.deepStrictEqual([...parsed.users.entries()].sort(), [...users.entries()].sort())
  })

  it("an empty map formats as the empty file, which has no users", () => {
    assert.strictEqual(Users.formatUsersFile(new Map()), "")
    assert.strictEqual(Users.parseUsersFile("").users.size, 0)
  })

  it("ignores blank lines and comments, accepts CRLF and no final newline, lower-cases names", () => {
    const text = [
      "# users of mx.example.com",
      "",
      "   ",
      `Alice:${sampleHash}\r`,
      "  # indented comment",
      `bob:${sampleHash}`
    ].join("\n")
    const parsed = Users.parseUsersFile(text)
    assert.deepStrictEqual(parsed.problems, [])
    assert.deepStrictEqual([...parsed.users.keys()], ["alice", "bob"])
    assert.strictEqual(parsed.users.get("alice"), sampleHash)
  })

  it("reports the lines it does not use, with their numbers, and keeps the others", () => {
    const text = [
      "# comment",
      "no colon here",
      `alice:${sampleHash}`,
      "bob:$scrypt$ln=14,r=8,p=1$broken",
      `al ice:${sampleHash}`,
      `ALICE:${sampleHash}`,
      `:${sampleHash}`,
      "carol:plaintext-password",
      `dave:${sampleHash}`
    ].join("\n")
    const { users, problems } = Users.parseUsersFile(text)
    assert.deepStrictEqual([...users.keys()], ["alice", "dave"])
    assert.deepStrictEqual(problems.map((p) => p.line), [2, 4, 5, 6, 7, 8])
    assert.match(problems[0]?.reason ?? "", /name:password-hash/)
    assert.match(problems[1]?.reason ?? "", /user bob: the password hash/)
    assert.match(problems[2]?.reason ?? "", /invalid user name "al ice": the name contains whitespace/)
    assert.match(problems[3]?.reason ?? "", /user alice is already on line 3/)
    assert.match(problems[4]?.reason ?? "", /the name is empty/)
    assert.match(problems[5]?.reason ?? "", /user carol/)
    assert.notInclude(problems[5]?.reason ?? "", "plaintext-password")
  })
})

describe("makeStore", () => {
  const write = (file: string, users: Record<string, string>) =>
    Fs.writeFile(file, Users.formatUsersFile(new Map(Object.entries(users))), { mode: 0o600 })

  it("verifies: the canonical name on success, undefined for a wrong password, an unknown user or an invalid name", async () => {
    const file = Path.join(directory, "users")
    await write(file, { alice: await Users.hashPassword("secret") })
    const store = Users.makeStore(file)
    assert.strictEqual(await store.verify("alice", "secret"), "alice")
    assert.strictEqual(await store.verify("ALICE", "secret"), "alice")
    assert.isUndefined(await store.verify("alice", "Secret"))
    assert.isUndefined(await store.verify("alice", ""))
    assert.isUndefined(await store.verify("bob", "secret"))
    assert.isUndefined(await store.verify("al:ice", "secret"))
  })

  it("a missing file has no users; it is picked up once it appears", async () => {
    const file = Path.join(directory, "missing", "users")
    const loads: Array<Users.StoreLoad> = []
    const store = Users.makeStore(file, { onLoad: (load) => loads.push(load) })
    assert.isUndefined(await store.verify("alice", "secret"))
    assert.strictEqual(loads[0]?.error, "missing")
    await Users.addUser(file, "alice", "secret")
    assert.strictEqual(await store.verify("alice", "secret"), "alice")
    assert.deepStrictEqual(loads.at(-1), { file, users: 1, problems: [], error: undefined })
  })

  it("an unknown user costs a scrypt too (timing does not tell which users exist)", async () => {
    const file = Path.join(directory, "users")
    await write(file, { alice: await Users.hashPassword("secret") })
    const store = Users.makeStore(file)
    await store.verify("alice", "warm-up")
    const time = async (verify: () => Promise<string | undefined>) => {
      const start = performance.now()
      assert.isUndefined(await verify())
      return performance.now() - start
    }
    const missingStore = Users.makeStore(Path.join(directory, "none"))
    await missingStore.verify("alice", "warm-up")
    const known = await time(() => store.verify("alice", "wrong"))
    const unknown = await time(() => store.verify("nobody", "wrong"))
    const invalid = await time(() => store.verify("no body", "wrong"))
    const missing = await time(() => missingStore.verify("alice", "wrong"))
    // Each ran one scrypt of the same cost; without it they would answer in well under a millisecond.
    assert.isAbove(unknown, known / 4)
    assert.isAbove(invalid, known / 4)
    assert.isAbove(missing, known / 4)
  })

  it("picks up a changed file without a restart, and reports its problems", async () => {
    const file = Path.join(directory, "users")
    const [one, two] = await Promise.all([Users.hashPassword("one"), Users.hashPassword("two")])
    await write(file, { alice: one })
    const loads: Array<Users.StoreLoad> = []
    const store = Users.makeStore(file, { onLoad: (load) => loads.push(load) })
    assert.strictEqual(await store.verify("alice", "one"), "alice")
    assert.strictEqual(await store.verify("alice", "one"), "alice")
    assert.strictEqual(loads.length, 1, "an unchanged file is not read again")

    await write(file, { alice: two, bob: one })
    assert.isUndefined(await store.verify("alice", "one"))
    assert.strictEqual(await store.verify("alice", "two"), "alice")
    assert.strictEqual(await store.verify("bob", "one"), "bob")

    await Fs.writeFile(file, `bob:${one}\nbroken line\n`)
    assert.isUndefined(await store.verify("alice", "two"))
    assert.strictEqual(await store.verify("bob", "one"), "bob")
    assert.deepStrictEqual(loads.at(-1)?.problems.map((p) => p.line), [2])

    await Fs.rm(file)
    assert.isUndefined(await store.verify("bob", "one"))
    assert.strictEqual(loads.at(-1)?.error, "missing")
  })

  it("concurrent verifies share one read", async () => {
    const file = Path.join(directory, "users")
    await write(file, { alice: await Users.hashPassword("secret") })
    const loads: Array<Users.StoreLoad> = []
    const store = Users.makeStore(file, { onLoad: (load) => loads.push(load) })
    const results = await Promise.all([
      store.verify("alice", "secret"),
      store.verify("alice", "wrong"),
      store.verify("nobody", "secret")
    ])
    assert.deepStrictEqual(results, ["alice", undefined, undefined])
    assert.strictEqual(loads.length, 1)
  })
})

describe("addUser / setPassword / removeUser", () => {
  it("add creates the file and its directory, mode 0600, name lower-cased", async () => {
    const file = Path.join(directory, "etc", "postern", "users")
    assert.strictEqual(await Users.addUser(file, "Alice", "secret"), "alice")
    const stats = await Fs.stat(file)
    assert.strictEqual(stats.mode & 0o777, 0o600)
    const { users, problems } = Users.parseUsersFile(await Fs.readFile(file, "utf8"))
    assert.deepStrictEqual(problems, [])
    assert.deepStrictEqual([...users.keys()], ["alice"])
    assert.isTrue(await Users.verifyPassword("secret", users.get("alice") ?? ""))
    assert.deepStrictEqual((await Fs.readdir(Path.dirname(file))).sort(), ["users"], "no temporary file left")
  })

  it("add refuses an existing user (in any case), an invalid name and an empty password", async () => {
    const file = Path.join(directory, "users")
    await Users.addUser(file, "alice", "secret")
    const before = await Fs.readFile(file, "utf8")
    const exists = await rejection(Users.addUser(file, "ALICE", "other"))
    assert.strictEqual(exists.reason, "UserExists")
    assert.strictEqual(exists.message, `user alice already exists in ${file}`)
    assert.strictEqual((await rejection(Users.addUser(file, "b:ob", "x"))).reason, "InvalidName")
    assert.strictEqual((await rejection(Users.addUser(file, "", "x"))).reason, "InvalidName")
    assert.strictEqual((await rejection(Users.addUser(file, "b ob", "x"))).reason, "InvalidName")
    assert.strictEqual((await rejection(Users.addUser(file, "x".repeat(65), "x"))).reason, "InvalidName")
    assert.strictEqual((await rejection(Users.addUser(file, "bob", ""))).reason, "EmptyPassword")
    assert.strictEqual(await Fs.readFile(file, "utf8"), before)
  })

  it("passwd replaces the password; fails for an absent user or a missing file", async () => {
    const file = Path.join(directory, "users")
    await Users.addUser(file, "alice", "old")
    await Users.addUser(file, "bob", "bobs")
    assert.strictEqual(await Users.setPassword(file, "Alice", "new"), "alice")
    const store = Users.makeStore(file)
    assert.isUndefined(await store.verify("alice", "old"))
    assert.strictEqual(await store.verify("alice", "new"), "alice")
    assert.strictEqual(await store.verify("bob", "bobs"), "bob")
    const absent = await rejection(Users.setPassword(file, "carol", "x"))
    assert.strictEqual(absent.reason, "NoSuchUser")
    assert.strictEqual(absent.message, `user carol does not exist in ${file}`)
    assert.strictEqual((await rejection(Users.setPassword(file, "alice", ""))).reason, "EmptyPassword")
    const missing = Path.join(directory, "none")
    assert.strictEqual((await rejection(Users.setPassword(missing, "alice", "x"))).reason, "NoSuchUser")
    assert.isFalse(await Fs.stat(missing).then(() => true, () => false), "no file created")
  })

  it("remove drops the user; fails when absent", async () => {
    const file = Path.join(directory, "users")
    await Users.addUser(file, "alice", "a")
    await Users.addUser(file, "bob", "b")
    assert.strictEqual(await Users.removeUser(file, "BOB"), "bob")
    assert.deepStrictEqual([...Users.parseUsersFile(await Fs.readFile(file, "utf8")).users.keys()], ["alice"])
    assert.strictEqual((await rejection(Users.removeUser(file, "bob"))).reason, "NoSuchUser")
    assert.strictEqual((await rejection(Users.removeUser(Path.join(directory, "none"), "bob"))).reason, "NoSuchUser")
    assert.strictEqual(await Users.removeUser(file, "alice"), "alice")
    assert.strictEqual(await Fs.readFile(file, "utf8"), "")
    assert.strictEqual((await Fs.stat(file)).mode & 0o777, 0o600)
  })

  it("edits keep comments, blank lines and order; a new user goes at the end", async () => {
    const file = Path.join(directory, "users")
    await Fs.writeFile(file, `# admins\nzed:${sampleHash}\n\n# others\nbob:${sampleHash}\n`, { mode: 0o644 })
    await Users.addUser(file, "alice", "a")
    await Users.setPassword(file, "zed", "z")
    await Users.removeUser(file, "bob")
    const lines = (await Fs.readFile(file, "utf8")).split("\n")
    assert.strictEqual(lines[0], "# admins")
    assert.match(lines[1] ?? "", /^zed:\$scrypt\$/)
    assert.notStrictEqual(lines[1], `zed:${sampleHash}`)
    assert.deepStrictEqual(lines.slice(2, 4), ["", "# others"])
    assert.match(lines[4] ?? "", /^alice:\$scrypt\$/)
    assert.deepStrictEqual(lines.slice(5), [""])
    assert.strictEqual((await Fs.stat(file)).mode & 0o777, 0o600, "rewritten with mode 0600")
  })

  it("refuses to edit a file with problems, naming the lines", async () => {
    const file = Path.join(directory, "users")
    const text = `alice:${sampleHash}\ngarbage\n`
    await Fs.writeFile(file, text)
    const error = await rejection(Users.addUser(file, "bob", "b"))
    assert.strictEqual(error.reason, "FileProblems")
    assert.include(error.message, "line 2: expected name:password-hash")
    assert.strictEqual(await Fs.readFile(file, "utf8"), text)
  })

  it("concurrent edits in one process are serialized: none is lost", async () => {
    const file = Path.join(directory, "users")
    await Promise.all(["a", "b", "c", "d"].map((name) => Users.addUser(file, name, "pw")))
    const { users } = Users.parseUsersFile(await Fs.readFile(file, "utf8"))
    assert.deepStrictEqual([...users.keys()].sort(), ["a", "b", "c", "d"])
  })
})
