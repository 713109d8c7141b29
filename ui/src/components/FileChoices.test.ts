// The native open and save dialogs are mocked (a native boundary WebDriver
// cannot drive either); everything behind them is the real component and
// the real command bindings over a mocked IPC.
import { beforeEach, describe, expect, it, vi } from "vitest";
import { fireEvent, render, screen } from "@testing-library/svelte";
import { mockIPC } from "@tauri-apps/api/mocks";
import { open, save } from "@tauri-apps/plugin-dialog";
import Accounts from "./Accounts.svelte";
import Blynk from "./Blynk.svelte";
import History from "./History.svelte";
import { AppModel } from "../lib/app.svelte";
import { job, node } from "../fixtures.test-util";

vi.mock("@tauri-apps/plugin-dialog", () => ({ open: vi.fn(), save: vi.fn() }));
const openDialog = vi.mocked(open);
const saveDialog = vi.mocked(save);

const settle = async () => {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 0));
};

function model() {
  const m = new AppModel();
  m.loaded = true;
  return m;
}

beforeEach(() => {
  openDialog.mockReset();
  saveDialog.mockReset();
});

describe("certificate files", () => {
  it("are chosen in the open dialog, shown by name, and sent to the backend", async () => {
    const calls: Array<[string, unknown]> = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return null;
    });
    openDialog.mockResolvedValueOnce("/home/ana/certs/ca.pem").mockResolvedValueOnce("/home/ana/certs/client.key");
    render(Accounts, { model: model() });
    await fireEvent.click(screen.getByLabelText("MQTT broker"));

    await fireEvent.click(screen.getByTestId("account-ca-choose"));
    await settle();
    expect(openDialog).toHaveBeenCalledTimes(1);
    const options = openDialog.mock.calls[0][0]!;
    expect(options.multiple).toBe(false);
    expect(options.directory).toBe(false);
    expect(options.filters?.[0].extensions).toEqual(["pem", "crt", "cer"]);
    expect((screen.getByTestId("account-ca") as HTMLInputElement).value).toBe("/home/ana/certs/ca.pem");
    expect(screen.getByTestId("account-ca-name").textContent).toBe("ca.pem");

    await fireEvent.click(screen.getByTestId("account-key-choose"));
    await settle();
    expect(openDialog.mock.calls[1][0]!.filters?.[0].extensions).toEqual(["key", "pem"]);
    expect((screen.getByTestId("account-key") as HTMLInputElement).value).toBe("/home/ana/certs/client.key");

    // The typed field still works beside the button.
    await fireEvent.input(screen.getByTestId("account-cert"), { target: { value: "/etc/broker/client.crt" } });
    expect(screen.getByTestId("account-cert-name").textContent).toBe("client.crt");

    await fireEvent.input(screen.getByPlaceholderText("Home"), { target: { value: "Lab" } });
    await fireEvent.input(screen.getAllByPlaceholderText("mqtts://broker:8883")[0], { target: { value: "mqtts://lab:8883" } });
    await fireEvent.submit(screen.getByRole("button", { name: "Add account" }).closest("form")!);
    await settle();
    const add = calls.find(([c]) => c === "add_mqtt_account");
    expect(add?.[1]).toMatchObject({
      input: { ca_file: "/home/ana/certs/ca.pem", client_cert: "/etc/broker/client.crt", client_key: "/home/ana/certs/client.key" },
    });
  });

  it("stay as they were when the dialog is cancelled", async () => {
    mockIPC(() => null);
    openDialog.mockResolvedValue(null);
    render(Accounts, { model: model() });
    await fireEvent.click(screen.getByLabelText("MQTT broker"));
    await fireEvent.input(screen.getByTestId("account-ca"), { target: { value: "/etc/ssl/ca.pem" } });
    await fireEvent.click(screen.getByTestId("account-ca-choose"));
    await settle();
    expect(openDialog).toHaveBeenCalledTimes(1);
    expect((screen.getByTestId("account-ca") as HTMLInputElement).value).toBe("/etc/ssl/ca.pem");
    expect(screen.getByTestId("account-ca-name").textContent).toBe("ca.pem");
    expect(screen.queryByRole("alert")).toBeNull();
  });
});

describe("the Blynk firmware file", () => {
  function blynkIPC(calls: Array<[string, unknown]>) {
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      if (cmd === "blynk_accounts")
        return [{ name: "home", url: "https://blynk.local:9443", user: "admin@blynk.cc", pinned_fingerprint: null, upload_limit: 1 << 20 }];
      if (cmd === "blynk_status" || cmd === "blynk_history") return [];
      if (cmd === "blynk_check_firmware")
        return { file_name: "sketch.ino.bin", build: "Nov 30 2026 12:00:00", size: 4096, sha256: "ab".repeat(32) };
      return null;
    });
  }

  it("is chosen in the open dialog for .bin files and checked at once", async () => {
    const calls: Array<[string, unknown]> = [];
    blynkIPC(calls);
    openDialog.mockResolvedValueOnce("/home/ana/Arduino/build/sketch.ino.bin");
    render(Blynk, { model: model() });
    await screen.findByTestId("blynk-firmware");
    await fireEvent.click(screen.getByTestId("blynk-firmware-choose"));
    await settle();
    expect(openDialog.mock.calls[0][0]!.filters).toEqual([{ name: "Firmware images (.bin)", extensions: ["bin"] }]);
    expect((screen.getByTestId("blynk-firmware") as HTMLInputElement).value).toBe("/home/ana/Arduino/build/sketch.ino.bin");
    expect(screen.getByTestId("blynk-firmware-name").textContent).toBe("sketch.ino.bin");
    expect(calls.find(([c]) => c === "blynk_check_firmware")?.[1]).toEqual({ path: "/home/ana/Arduino/build/sketch.ino.bin" });
    expect(screen.getByTestId("blynk-fw-info").textContent).toContain("Nov 30 2026 12:00:00");
  });

  it("on a phone is chosen only in the system's picker: no path to type", async () => {
    const calls: Array<[string, unknown]> = [];
    blynkIPC(calls);
    openDialog.mockResolvedValueOnce("content://com.android.providers.downloads.documents/document/42");
    const m = model();
    m.status = { mobile: true } as AppModel["status"];
    render(Blynk, { model: m });
    const choose = await screen.findByTestId("blynk-firmware-choose");
    expect(screen.queryByTestId("blynk-firmware")).toBeNull();
    await fireEvent.click(choose);
    await settle();
    expect(calls.find(([c]) => c === "blynk_check_firmware")?.[1]).toEqual({
      path: "content://com.android.providers.downloads.documents/document/42",
    });
  });

  it("keeps the demo's firmware when the dialog is cancelled, and checks nothing", async () => {
    const calls: Array<[string, unknown]> = [];
    blynkIPC(calls);
    openDialog.mockResolvedValueOnce(null);
    const m = model();
    m.status = { demo_firmware: "/tmp/greenlight-demo/demo-firmware-2.0.bin" } as AppModel["status"];
    render(Blynk, { model: m });
    const field = (await screen.findByTestId("blynk-firmware")) as HTMLInputElement;
    expect(field.value).toBe("/tmp/greenlight-demo/demo-firmware-2.0.bin");
    await fireEvent.click(screen.getByTestId("blynk-firmware-choose"));
    await settle();
    expect(openDialog).toHaveBeenCalledTimes(1);
    expect(field.value).toBe("/tmp/greenlight-demo/demo-firmware-2.0.bin");
    expect(calls.some(([c]) => c === "blynk_check_firmware")).toBe(false);
  });
});

describe("the CSV export", () => {
  function historyModel() {
    const m = model();
    m.nodes = [node("a1", "Kitchen Plug")];
    m.history = [job(1, "a1", { state: "success" }, { headline: "Updated" })];
    return m;
  }

  it("asks where to save, with a dated name, and writes there", async () => {
    const calls: Array<[string, unknown]> = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return "/home/ana/Documents/fleet.csv";
    });
    saveDialog.mockResolvedValueOnce("/home/ana/Documents/fleet.csv");
    const m = historyModel();
    render(History, { model: m });
    await fireEvent.click(screen.getByText("Export CSV"));
    await settle();
    const options = saveDialog.mock.calls[0][0]!;
    expect(options.defaultPath).toMatch(/^greenlight-history-\d{4}-\d{2}-\d{2}\.csv$/);
    expect(options.filters).toEqual([{ name: "CSV", extensions: ["csv"] }]);
    expect(calls).toEqual([
      ["export_history_csv", { query: { account: null, node_id: null, limit: null }, path: "/home/ana/Documents/fleet.csv" }],
    ]);
    expect(m.notices.at(-1)?.text).toBe("History saved to /home/ana/Documents/fleet.csv");
  });

  it("does nothing and says nothing when the save dialog is cancelled", async () => {
    const calls: string[] = [];
    mockIPC((cmd) => {
      calls.push(cmd);
      return null;
    });
    saveDialog.mockResolvedValueOnce(null);
    const m = historyModel();
    render(History, { model: m });
    await fireEvent.click(screen.getByText("Export CSV"));
    await settle();
    expect(saveDialog).toHaveBeenCalledTimes(1);
    expect(calls).toEqual([]);
    expect(m.notices).toEqual([]);
  });

  it("says clearly when the chosen file cannot be written", async () => {
    const message = "cannot save /media/cdrom/fleet.csv: Read-only file system (os error 30); nothing was written";
    mockIPC(() => {
      throw { kind: "failed", message };
    });
    saveDialog.mockResolvedValueOnce("/media/cdrom/fleet.csv");
    const m = historyModel();
    render(History, { model: m });
    await fireEvent.click(screen.getByText("Export CSV"));
    await settle();
    expect(m.notices.at(-1)).toMatchObject({ kind: "error", text: message });
  });

  it("saves to the Downloads folder, as before, when there is no dialog", async () => {
    const calls: Array<[string, unknown]> = [];
    mockIPC((cmd, args) => {
      calls.push([cmd, args]);
      return "/home/ana/Downloads/greenlight-history-1.csv";
    });
    saveDialog.mockRejectedValueOnce(new Error("dialog.save not allowed"));
    const m = historyModel();
    render(History, { model: m });
    await fireEvent.click(screen.getByText("Export CSV"));
    await settle();
    expect(calls).toEqual([["export_history_csv", { query: { account: null, node_id: null, limit: null }, path: null }]]);
    expect(m.notices.at(-1)?.text).toBe("History saved to /home/ana/Downloads/greenlight-history-1.csv");
  });
});
