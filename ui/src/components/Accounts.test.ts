import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import { mockIPC } from "@tauri-apps/api/mocks";
import Accounts from "./Accounts.svelte";
import { prettyFingerprint, withoutFingerprint } from "./Fingerprint.svelte";
import { AppModel } from "../lib/app.svelte";

const FP = "a1bf45a2f1dcee855fd69b127dc47a52100b16dfe16b8896af5f32858dda4f01";
const PRETTY = prettyFingerprint(FP);
// The words the app's add_rainmaker_account gives with an unknown certificate.
const MESSAGE = `https://127.0.0.1:8443 shows a certificate your system does not trust. If this is your server, compare its fingerprint ${PRETTY} and trust it.`;

// What was scrolled into view.
let scrolled: Element[] = [];
const scrollIntoView = HTMLElement.prototype.scrollIntoView;
beforeEach(() => {
  scrolled = [];
  HTMLElement.prototype.scrollIntoView = function (this: HTMLElement) {
    scrolled.push(this);
  };
});
afterEach(() => {
  HTMLElement.prototype.scrollIntoView = scrollIntoView;
});

function model() {
  const m = new AppModel();
  m.loaded = true;
  return m;
}

async function submit(name = "Home") {
  await fireEvent.input(screen.getByPlaceholderText("Home"), { target: { value: name } });
  await fireEvent.submit(screen.getByRole("button", { name: "Add account" }).closest("form")!);
  for (let i = 0; i < 3; i++) await new Promise((r) => setTimeout(r, 0));
}

describe("the fingerprint", () => {
  it("is written in pairs and taken out of the message it is shown under", () => {
    expect(PRETTY.slice(0, 11)).toBe("A1:BF:45:A2");
    expect(withoutFingerprint(MESSAGE, FP)).toBe(
      "https://127.0.0.1:8443 shows a certificate your system does not trust. If this is your server, compare its fingerprint below and trust it.",
    );
    expect(withoutFingerprint(`fingerprint ${FP}.`, FP)).toBe("fingerprint below.");
    expect(withoutFingerprint("no fingerprint here", FP)).toBe("no fingerprint here");
  });
});

describe("Accounts", () => {
  it("shows an unknown certificate's fingerprint once, grouped in blocks of four bytes", async () => {
    mockIPC((cmd) => {
      if (cmd === "add_rainmaker_account") throw { kind: "untrusted_certificate", fingerprint: FP, message: MESSAGE };
      return null;
    });
    render(Accounts, { model: model() });
    await submit();
    const box = await screen.findByTestId("unknown-cert");
    const hex = (box.textContent ?? "").toUpperCase().replace(/[^0-9A-F]/g, "");
    expect(hex.split(FP.toUpperCase()).length - 1).toBe(1);
    const fp = screen.getByTestId("unknown-cert-fingerprint");
    expect(fp.textContent).toBe(PRETTY);
    expect([...fp.querySelectorAll("span")].map((s) => s.textContent)).toEqual(PRETTY.match(/..(?::..){3}/g));
    expect(box.textContent).toContain("compare its fingerprint below and trust it");
    expect(scrolled).toEqual([box]);
  });

  it("shows an error next to the Add button", async () => {
    mockIPC((cmd) => {
      if (cmd === "add_rainmaker_account") throw { kind: "needs_login", account: "Home", message: "could not log in: wrong password" };
      return null;
    });
    render(Accounts, { model: model() });
    await submit();
    const error = await screen.findByTestId("account-error");
    expect(error.textContent).toBe("could not log in: wrong password");
    expect(error.parentElement!.contains(screen.getByRole("button", { name: "Add account" }))).toBe(true);
    expect(scrolled).toEqual([error.parentElement]);
  });

  it("sends a broker password over plain mqtt:// only once the user ticks the box", async () => {
    const calls: Array<Record<string, unknown>> = [];
    mockIPC((cmd, args) => {
      if (cmd !== "add_mqtt_account") return null;
      const input = (args as { input: Record<string, unknown> }).input;
      calls.push(input);
      if (!input.allow_plaintext_password) {
        throw { kind: "invalid", message: "the broker URL mqtt://lab.lan:1883 is mqtt:// (not encrypted): the password would travel in clear; use mqtts:// or confirm" };
      }
      return null;
    });
    render(Accounts, { model: model() });
    await fireEvent.click(screen.getByLabelText("MQTT broker"));
    const broker = screen.getAllByPlaceholderText("mqtts://broker:8883")[0];
    await fireEvent.input(broker, { target: { value: "mqtts://lab.lan:8883" } });
    await fireEvent.input(screen.getByLabelText("User name"), { target: { value: "watcher" } });
    await fireEvent.input(screen.getByLabelText("Password"), { target: { value: "pw" } });
    // Encrypted: nothing to confirm.
    expect(screen.queryByTestId("account-plain")).toBeNull();

    await fireEvent.input(broker, { target: { value: "mqtt://lab.lan:1883" } });
    const box = screen.getByTestId("account-plain").querySelector("input")!;
    expect(box.checked).toBe(false);
    await submit("Lab");
    expect(calls.at(-1)).toMatchObject({ url: "mqtt://lab.lan:1883", allow_plaintext_password: false });
    expect((await screen.findByTestId("account-error")).textContent).toContain("the password would travel in clear");

    await fireEvent.click(box);
    await submit("Lab");
    expect(calls.at(-1)).toMatchObject({ allow_plaintext_password: true });
    expect(screen.queryByTestId("account-error")).toBeNull();
  });
});
