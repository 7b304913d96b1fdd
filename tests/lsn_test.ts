import { assertEquals, assertThrows } from "./helpers/assert.ts";
import { compareLsn, formatLsn, maxLsn, parseLsn } from "../lib/lsn.ts";

Deno.test("parseLsn() reads the X/Y form as a 64-bit number", () => {
  assertEquals(parseLsn("16/B374D848"), 0x16_B374D848n);
  assertEquals(parseLsn("0/0"), 0n);
  assertEquals(parseLsn("FFFFFFFF/FFFFFFFF"), 0xFFFF_FFFF_FFFF_FFFFn);
  assertEquals(parseLsn("0/3000060"), 0x3000060n);
  assertEquals(parseLsn("a/b"), 0xA_0000000Bn);
});

Deno.test("formatLsn() round-trips and prints upper-case hex without leading zeros", () => {
  for (const text of ["0/0", "16/B374D848", "0/3000060", "FFFFFFFF/FFFFFFFF", "1/0"]) {
    assertEquals(formatLsn(parseLsn(text)), text);
  }
  assertEquals(formatLsn(parseLsn("000A/000B")), "A/B");
});

for (
  const [what, bad] of [
    ["an empty string", ""],
    ["a missing slash", "16B374D848"],
    ["non-hex digits", "16/B374G848"],
    ["more than 8 digits a side", "16/1B374D8480"],
    ["a negative number", "-1/0"],
    ["an empty side", "/10"],
    ["spaces", " 0/10"],
    ["two slashes", "0/1/2"],
  ]
) {
  Deno.test(`parseLsn() rejects ${what}`, () => {
    assertThrows(() => parseLsn(bad!), SyntaxError, `"${bad}"`);
  });
}

Deno.test("compareLsn() and maxLsn() order LSNs numerically, not as text", () => {
  const a = parseLsn("9/0"), b = parseLsn("10/0");
  assertEquals(compareLsn(a, b), -1);
  assertEquals(compareLsn(b, a), 1);
  assertEquals(compareLsn(a, a), 0);
  assertEquals(maxLsn(a, b), b);
});
