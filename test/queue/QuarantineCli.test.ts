/**
 * `postern quarantine` as an administrator runs it, when its configuration does not load: the
 * reason is said once, on one line of stderr, with exit status 2 as `serve` and `config check`
 * give; not a second time as a stack trace (review finding).
 */
import { assert, describe, it } from "@effect/vitest"
import * as Fs from "node:fs/promises"
import * as Os from "node:os"
import * as Path from "node:path"
import { runPostern } from "../support/Daemon.ts"

describe("postern quarantine, configuration errors", () => {
  it("a configuration file that does not exist: one line naming it, exit status 2, for every subcommand", async () => {
    const missing = Path.join(Os.tmpdir(), `postern-no-such-config-${process.pid}.ts`)
    for (const args of [["list"], ["release", "spam/a@b.test/1.Q1_0.mx"], ["delete", "spam/a@b.test/1.Q1_0.mx"]]) {
      const result = await runPostern(["quarantine", ...args, "--config", missing])
      assert.strictEqual(result.code, 2, `${args[0]}: ${result.stderr}`)
      assert.strictEqual(result.stdout, "")
      assert.deepStrictEqual(result.stderr.trimEnd().split("\n"), [`postern quarantine: ${missing}: no such file: ${missing}`])
    }
  })

  it("a configuration with a wrong value: the field is named, once, exit status 2", async () => {
    const dir = await Fs.mkdtemp(Path.join(Os.tmpdir(), "postern-quarantine-cli-"))
    const file = Path.join(dir, "postern.config.ts")
    await Fs.writeFile(file, `export default { hostname: "mx.test", limits: { recipients: -1 } }\n`)
    const result = await runPostern(["quarantine", "list", "--config", file])
    assert.strictEqual(result.code, 2, result.stderr)
    assert.include(result.stderr, "limits.recipients")
    assert.notInclude(result.stderr, "    at ")
    assert.strictEqual(result.stderr.match(/postern quarantine:/g)?.length, 1)
    await Fs.rm(dir, { recursive: true, force: true })
  })
})
