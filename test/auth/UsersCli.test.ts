/**
 * `postern user` as an admin runs it: `node src/main.ts user ...` in a child process, the
 * password piped on standard input.
 */
import { afterEach, assert, beforeEach, describe, it } from "@effect/vitest"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import * as Users from "../../src/auth/Users.ts"
import { repoRoot, runPostern } from "../support/Daemon.ts"


/** Runs `postern <args>` with `input` on its standard input: exit code and output. */
const postern = async (args: ReadonlyArray<string>, input: string) => {
  const { code, stdout, stderr } = await runPostern(args, 30_000, input)
  return { code, stdout, stderr }
}

let directory = ""
let file = ""

beforeEach(async () => {
  directory = await Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-users-cli-"))
  file = Path.join(directory, "conf", "users")
})

afterEach(async () => {
  await Fs.rm(directory, { recursive: true, force: true })
})

const usersOf = async (path: string) => Users.parseUsersFile(await Fs.readFile(path, "utf8"))

describe("postern user", () => {
  it("add: creates the file (mode 0600) with the user, lower-cased; the password is the first line of stdin", async () => {
    const run = await postern(["user", "add", "Alice", "--file", file], "s3cret pass\nignored second line\n")
    assert.deepStrictEqual(run, { code: 0, stdout: `user alice added to ${file}\n`, stderr: "" })
    assert.strictEqual((await Fs.stat(file)).mode & 0o777, 0o600)
    const { users, problems } = await usersOf(file)
    assert.deepStrictEqual(problems, [])
    assert.deepStrictEqual([...users.keys()], ["alice"])
    const store = Users.makeStore(file)
    assert.strictEqual(await store.verify("alice", "s3cret pass"), "alice")
    assert.isUndefined(await store.verify("alice", "ignored second line"))
  })

  it("add: a CRLF line ending or none at all is not part of the password", async () => {
    assert.strictEqual((await postern(["user", "add", "crlf", "--file", file], "pw1\r\n")).code, 0)
    assert.strictEqual((await postern(["user", "add", "bare", "--file", file], "pw2")).code, 0)
    const store = Users.makeStore(file)
    assert.strictEqual(await store.verify("crlf", "pw1"), "crlf")
    assert.strictEqual(await store.verify("bare", "pw2"), "bare")
  })

  it("add: a user that exists is refused, exit 1, file unchanged", async () => {
    assert.strictEqual((await postern(["user", "add", "alice", "--file", file], "one\n")).code, 0)
    const before = await Fs.readFile(file, "utf8")
    const run = await postern(["user", "add", "ALICE", "--file", file], "two\n")
    assert.deepStrictEqual(run, {
      code: 1,
      stdout: "",
      stderr: `postern user add: user alice already exists in ${file}\n`
    })
    assert.strictEqual(await Fs.readFile(file, "utf8"), before)
  })

  it("add: an empty password (empty line or no input) is refused, exit 1, no file written", async () => {
    for (const input of ["\n", ""]) {
      const run = await postern(["user", "add", "alice", "--file", file], input)
      assert.strictEqual(run.code, 1)
      assert.strictEqual(run.stdout, "")
      assert.strictEqual(run.stderr, "postern user add: the password is empty (give it as the first line of standard input)\n")
    }
    assert.isFalse(await Fs.stat(file).then(() => true, () => false))
  })

  it("add: an invalid name is refused, exit 1", async () => {
    const run = await postern(["user", "add", "al:ice", "--file", file], "pw\n")
    assert.strictEqual(run.code, 1)
    assert.strictEqual(run.stderr, `postern user add: invalid user name "al:ice": the name contains ':'\n`)
  })

  it("passwd: replaces the password; an absent user is refused, exit 1", async () => {
    await postern(["user", "add", "alice", "--file", file], "old\n")
    const run = await postern(["user", "passwd", "Alice", "--file", file], "new\n")
    assert.deepStrictEqual(run, { code: 0, stdout: `password of user alice changed in ${file}\n`, stderr: "" })
    const store = Users.makeStore(file)
    assert.isUndefined(await store.verify("alice", "old"))
    assert.strictEqual(await store.verify("alice", "new"), "alice")

    const absent = await postern(["user", "passwd", "bob", "--file", file], "pw\n")
    assert.deepStrictEqual(absent, {
      code: 1,
      stdout: "",
      stderr: `postern user passwd: user bob does not exist in ${file}\n`
    })
    const empty = await postern(["user", "passwd", "alice", "--file", file], "\n")
    assert.strictEqual(empty.code, 1)
    assert.match(empty.stderr, /the password is empty/)
    assert.strictEqual(await store.verify("alice", "new"), "alice")
  })

  it("remove: drops the user; an absent one is refused, exit 1", async () => {
    await postern(["user", "add", "alice", "--file", file], "a\n")
    await postern(["user", "add", "bob", "--file", file], "b\n")
    const run = await postern(["user", "remove", "alice", "--file", file], "")
    assert.deepStrictEqual(run, { code: 0, stdout: `user alice removed from ${file}\n`, stderr: "" })
    assert.deepStrictEqual([...(await usersOf(file)).users.keys()], ["bob"])

    const again = await postern(["user", "remove", "alice", "--file", file], "")
    assert.deepStrictEqual(again, {
      code: 1,
      stdout: "",
      stderr: `postern user remove: user alice does not exist in ${file}\n`
    })
  })

  it("a relative --file is resolved against the working directory in the messages", async () => {
    const relative = Path.relative(repoRoot, file)
    const run = await postern(["user", "add", "alice", "--file", relative], "pw\n")
    assert.deepStrictEqual(run, { code: 0, stdout: `user alice added to ${file}\n`, stderr: "" })
  })
})

describe("postern user without --file", () => {
  it("uses the auth.usersFile of --config, relative to the configuration file, as the daemon does", async () => {
    const configFile = Path.join(directory, "postern.config.ts")
    await Fs.writeFile(configFile, `export default { auth: { usersFile: "etc/users" } }\n`)
    const added = await postern(["user", "add", "dave", "--config", configFile], "pass word\n")
    assert.strictEqual(added.code, 0, added.stderr)
    const expected = Path.join(directory, "etc", "users")
    assert.strictEqual(added.stdout.trim(), `user dave added to ${expected}`)
    assert.strictEqual(await Users.makeStore(expected).verify("dave", "pass word"), "dave")
  })

  it("a configuration that does not load is refused with its problem", async () => {
    const configFile = Path.join(directory, "broken.config.ts")
    await Fs.writeFile(configFile, `export default { auth: { maxFailures: 0 } }\n`)
    const refused = await postern(["user", "add", "dave", "--config", configFile], "pass word\n")
    assert.strictEqual(refused.code, 1)
    assert.include(refused.stderr, "auth.maxFailures: expected a positive integer, got 0")
  })
})
