/**
 * The quarantines as an administrator handles them: list (with From and Subject), release to
 * the recipient's Maildir (idempotent, so a crash between delivery and removal is finished by
 * releasing again), release to a discard domain, refusals (remote recipient, unknown id, ids
 * that would leave the root), and delete.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs/promises"
import * as Path from "node:path"
import { Effect } from "effect"
import * as Maildir from "../../src/queue/Maildir.ts"
import * as Quarantine from "../../src/queue/Quarantine.ts"
import * as Queue from "../../src/queue/Queue.ts"
import { exists, list, readFile, tempDirectory } from "./QueueFixtures.ts"

const encoder = new TextEncoder()

const localDomains = [
  { domain: "mail.test", users: "*", transport: "maildir" },
  { domain: "void.test", users: "*", transport: "discard" }
] as const

const route = (recipient: string) => Quarantine.destinationOf(Queue.route(localDomains, recipient))

/** Holds a message as the queue does: a Maildir per quarantine and recipient. */
const hold = (root: string, quarantine: string, recipient: string, name: string, subject: string) =>
  Effect.gen(function*() {
    const content = encoder.encode(`From: sender@remote.test\r\nSubject: ${subject}\r\n\r\nbody of ${name}\r\n`)
    yield* Maildir.deliver({ root, domain: quarantine, user: recipient, name, content: [content] })
    return content
  })

const setUp = Effect.gen(function*() {
  const state = yield* tempDirectory("quarantine")
  const maildirRoot = Path.join(state, "mail")
  const root = Quarantine.defaultRoot(maildirRoot)
  return { state, maildirRoot, root }
})

describe("Quarantine", () => {
  it.live("lists every held message with its id, recipient, From and Subject; by quarantine on request", () =>
    Effect.gen(function*() {
      const { root } = yield* setUp
      yield* hold(root, "spam", "alice@mail.test", "1.Q1_0.mx", "cheap pills")
      yield* hold(root, "review", "Bob@Mail.test", "2.Q2_0.mx", "invoice")
      const held = yield* Quarantine.list(root)
      assert.deepStrictEqual(
        held.map((h) => [h.id, h.quarantine, h.recipient, h.from, h.subject]).sort(),
        [
          ["review/bob@mail.test/2.Q2_0.mx", "review", "bob@mail.test", "sender@remote.test", "invoice"],
          ["spam/alice@mail.test/1.Q1_0.mx", "spam", "alice@mail.test", "sender@remote.test", "cheap pills"]
        ]
      )
      assert.deepStrictEqual((yield* Quarantine.list(root, "spam")).map((h) => h.id), ["spam/alice@mail.test/1.Q1_0.mx"])
      assert.deepStrictEqual(yield* Quarantine.list(Path.join(root, "absent")), [])
    }))

  it.live("release delivers to the recipient's Maildir under the same name and removes the held copy", () =>
    Effect.gen(function*() {
      const { root, maildirRoot } = yield* setUp
      const content = yield* hold(root, "spam", "alice@mail.test", "1.Q1_0.mx", "not spam after all")
      const path = yield* Quarantine.release(root, "spam/alice@mail.test/1.Q1_0.mx", { maildirRoot, route })
      assert.strictEqual(path, Path.join(maildirRoot, "mail.test", "alice", "new", "1.Q1_0.mx"))
      assert.deepStrictEqual(yield* readFile(path), content)
      assert.deepStrictEqual(yield* Quarantine.list(root), [])
    }))

  it.live("a release interrupted after delivery (both copies there) is finished by releasing again, without a second copy", () =>
    Effect.gen(function*() {
      const { root, maildirRoot } = yield* setUp
      const content = yield* hold(root, "spam", "alice@mail.test", "1.Q1_0.mx", "twice")
      // As if the first release crashed after delivering: the copy is in the mailbox already.
      yield* Maildir.deliver({ root: maildirRoot, domain: "mail.test", user: "alice", name: "1.Q1_0.mx", content: [content] })
      yield* Quarantine.release(root, "spam/alice@mail.test/1.Q1_0.mx", { maildirRoot, route })
      assert.deepStrictEqual(yield* list(Path.join(maildirRoot, "mail.test", "alice", "new")), ["1.Q1_0.mx"])
      assert.deepStrictEqual(yield* Quarantine.list(root), [])
    }))

  it.live("a recipient in a discard domain is released into nothing; a remote one is refused and stays held", () =>
    Effect.gen(function*() {
      const { root, maildirRoot } = yield* setUp
      yield* hold(root, "spam", "x@void.test", "1.Q1_0.mx", "to the void")
      yield* hold(root, "spam", "far@remote.test", "2.Q2_0.mx", "far away")
      assert.strictEqual(yield* Quarantine.release(root, "spam/x@void.test/1.Q1_0.mx", { maildirRoot, route }), "discarded")
      const refused = yield* Effect.flip(Quarantine.release(root, "spam/far@remote.test/2.Q2_0.mx", { maildirRoot, route }))
      assert.strictEqual(refused.message, "remote.test is not a local domain, and outbound delivery is not implemented")
      assert.deepStrictEqual((yield* Quarantine.list(root)).map((h) => h.id), ["spam/far@remote.test/2.Q2_0.mx"])
    }))

  it.live("ids that are not a held message's, or that would leave the root, are refused", () =>
    Effect.gen(function*() {
      const { root, maildirRoot, state } = yield* setUp
      yield* Effect.promise(() => Fs.writeFile(Path.join(state, "secret"), "x"))
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["spam/alice@mail.test/absent", "no such held message (released or deleted already?)"],
        ["../../secret", "not a held message's id (<quarantine>/<recipient>/<file>, as `postern quarantine list` shows)"],
        ["spam/../../secret", "not a held message's id (<quarantine>/<recipient>/<file>, as `postern quarantine list` shows)"],
        ["spam/alice@mail.test/..", "not a held message's id (<quarantine>/<recipient>/<file>, as `postern quarantine list` shows)"],
        ["spam/alice@mail.test", "not a held message's id (<quarantine>/<recipient>/<file>, as `postern quarantine list` shows)"]
      ]
      for (const [id, message] of cases) {
        assert.strictEqual((yield* Effect.flip(Quarantine.release(root, id, { maildirRoot, route }))).message, message, id)
        assert.strictEqual((yield* Effect.flip(Quarantine.remove(root, id))).message, message, id)
      }
      assert.isTrue(yield* exists(Path.join(state, "secret")))
    }))

  it.live("a link planted in a quarantine is never followed: not listed, not released (review finding)", () =>
    Effect.gen(function*() {
      const { root, maildirRoot, state } = yield* setUp
      yield* hold(root, "spam", "alice@mail.test", "1.Q1_0.mx", "real")
      const secret = Path.join(state, "secret")
      yield* Effect.promise(() => Fs.writeFile(secret, "root only"))
      yield* Effect.promise(() => Fs.symlink(secret, Path.join(root, "spam", "alice@mail.test", "new", "2.link")))
      assert.deepStrictEqual((yield* Quarantine.list(root)).map((h) => h.id), ["spam/alice@mail.test/1.Q1_0.mx"])
      const refused = yield* Effect.flip(Quarantine.release(root, "spam/alice@mail.test/2.link", { maildirRoot, route }))
      assert.strictEqual(refused.message, "no such held message (released or deleted already?)")
      assert.deepStrictEqual(yield* list(Path.join(maildirRoot, "mail.test", "alice", "new")), [])
    }))

  it.live("--name is a quarantine's name, never a path: it cannot list the mailboxes beside the quarantines (review finding)", () =>
    Effect.gen(function*() {
      const { root, maildirRoot } = yield* setUp
      yield* hold(root, "spam", "alice@mail.test", "1.Q1_0.mx", "held")
      yield* Maildir.deliver({ root: maildirRoot, domain: "mail.test", user: "bob", name: "9.Q9_0.mx", content: [encoder.encode("Subject: private\r\n\r\nx\r\n")] })
      assert.deepStrictEqual(yield* Quarantine.list(root, "../mail"), [])
      assert.deepStrictEqual((yield* Quarantine.list(root, "Spam")).map((h) => h.id), ["spam/alice@mail.test/1.Q1_0.mx"])
    }))

  it.live("a held copy a mail reader marked seen (cur/, :2,S) is released as new mail, without the flags (review finding)", () =>
    Effect.gen(function*() {
      const { root, maildirRoot } = yield* setUp
      yield* hold(root, "spam", "alice@mail.test", "1.Q1_0.mx", "read by the admin")
      const box = Path.join(root, "spam", "alice@mail.test")
      yield* Effect.promise(() => Fs.rename(Path.join(box, "new", "1.Q1_0.mx"), Path.join(box, "cur", "1.Q1_0.mx:2,S")))
      const path = yield* Quarantine.release(root, "spam/alice@mail.test/1.Q1_0.mx:2,S", { maildirRoot, route })
      assert.strictEqual(path, Path.join(maildirRoot, "mail.test", "alice", "new", "1.Q1_0.mx"))
      assert.deepStrictEqual(yield* Quarantine.list(root), [])
    }))

  it.live("release refuses to write mailboxes that belong to another user (sudo would leave them unusable to the daemon) (review finding)", () =>
    Effect.gen(function*() {
      assert.strictEqual(process.geteuid?.(), 0, "this test changes a directory's owner: run as root (TESTING.md)")
      const { root, maildirRoot } = yield* setUp
      yield* hold(root, "spam", "alice@mail.test", "1.Q1_0.mx", "held")
      yield* Effect.promise(() => Fs.mkdir(maildirRoot, { recursive: true }))
      yield* Effect.promise(() => Fs.chown(maildirRoot, 65534, 65534))
      const refused = yield* Effect.flip(Quarantine.release(root, "spam/alice@mail.test/1.Q1_0.mx", { maildirRoot, route }))
      assert.strictEqual(refused.message, `${maildirRoot} belongs to uid 65534, and this runs as uid 0: release as the user that owns the mailboxes (the daemon's)`)
      assert.strictEqual((yield* Quarantine.list(root)).length, 1)
    }))

  it.live("delete removes a held message for good", () =>
    Effect.gen(function*() {
      const { root } = yield* setUp
      yield* hold(root, "spam", "alice@mail.test", "1.Q1_0.mx", "junk")
      yield* Quarantine.remove(root, "spam/alice@mail.test/1.Q1_0.mx")
      assert.deepStrictEqual(yield* Quarantine.list(root), [])
    }))

  it("a recipient directory name is the address with Maildir's escapes undone", () => {
    for (const address of ["alice@mail.test", "a/b@mail.test", ".dot@mail.test", "back\\slash@mail.test"]) {
      const directory = Maildir.directoryName(address) ?? ""
      assert.strictEqual(Maildir.fromDirectoryName(directory), address)
    }
  })
})
