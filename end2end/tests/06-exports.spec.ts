import { expect, test, type Page } from "@playwright/test";
import { addConnection, admin, contributor, open, sandboxURL, shot, signIn, signOut } from "./helpers";

const connection = "Marketing";

async function sandbox(page: Page, path: string) {
  const res = await page.request.get(`${sandboxURL}${path}`);
  expect(res.ok()).toBeTruthy();
  return res.json();
}

async function setProcessingDelay(page: Page, ms: number) {
  const settings = await sandbox(page, "/_sandbox/settings");
  settings.processing_delay_ms = ms;
  const res = await page.request.put(`${sandboxURL}/_sandbox/settings`, { data: settings });
  expect(res.ok()).toBeTruthy();
}

async function customersList(page: Page) {
  const { lists } = await sandbox(page, "/_sandbox/lists");
  return lists.find((l: { name: string }) => l.name === "Customers");
}

test("a contributor adds a destination, runs it and reads what happened to every contact", async ({ page }) => {
  await signIn(page, admin);
  await addConnection(page, connection);
  await signOut(page);

  await signIn(page, contributor);
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Exports" }).click();
  await expect(page.getByRole("heading", { name: "Exports" })).toBeVisible();
  await expect(page.getByText("No exports yet.")).toBeVisible();
  await page.getByRole("link", { name: "Add destination" }).click();
  await expect(page.getByRole("heading", { name: "Add destination" })).toBeVisible();
  await page.locator("body[data-hydrated]").waitFor();

  // Connection, then a new list, picked from the account's lists.
  await expect(page.getByLabel(connection)).toBeChecked();
  await page.getByLabel("New list name").fill("Customers");
  await page.getByRole("button", { name: "Create list" }).click();
  const picker = page.getByLabel("Constant Contact list");
  await expect(picker.locator("option", { hasText: "Customers (0 members)" })).toHaveCount(1);
  await picker.selectOption({ label: "Customers (0 members)" });
  const list = await customersList(page);
  await expect(page.getByLabel("List ID")).toHaveValue(list.list_id);

  // Data matching: email, first and last name.
  await page.getByLabel("Email field").selectOption("email");
  await page.getByRole("button", { name: "Add attribute" }).click();
  await page.getByLabel("Profile field 1").selectOption("first_name");
  await page.getByLabel("Constant Contact field 1").selectOption("first_name");
  await page.getByRole("button", { name: "Add attribute" }).click();
  await page.getByLabel("Profile field 2").selectOption("last_name");
  await page.getByLabel("Constant Contact field 2").selectOption("last_name");
  // A field cannot be mapped twice.
  await expect(page.getByLabel("Constant Contact field 2").locator('option[value="first_name"]')).toBeDisabled();

  // Two segments, with the total counted.
  await page.getByLabel(/^Hungarian customers/).check();
  await page.getByLabel(/^High value/).check();
  await expect(page.getByTestId("export-count")).toContainText("profiles selected");
  await page.getByLabel("Export name").fill("Newsletter");
  await shot(page, "06-export-form");
  await page.getByRole("button", { name: "Save" }).click();

  // Saved, and nothing sent.
  await expect(page.getByText("Saving did not send anything")).toBeVisible();
  const row = page.getByTestId("export-row").filter({ hasText: "Newsletter" });
  await expect(row).toContainText("Customers");
  await expect(row).toContainText(list.list_id);
  await expect(row).toContainText("Hungarian customers, High value");
  await expect(row).toContainText("Never run");
  expect((await customersList(page)).members).toBe(0);
  await shot(page, "06-exports-list");

  // Run now: the row follows the run to its end without a reload.
  await row.getByRole("button", { name: "Run now" }).click();
  await expect(row.getByTestId("run-status")).toHaveText(/Succeeded|Partially succeeded/, { timeout: 30_000 });
  await expect(row.getByTestId("run-counts")).toContainText("sent");
  await shot(page, "06-exports-after-run");

  // The run page: counts, errors, download.
  await row.getByRole("link", { name: /Run #\d+/ }).click();
  await expect(page.getByRole("heading", { name: /Run #\d+ of Newsletter/ })).toBeVisible();
  await expect(page.getByTestId("run-count-table")).toContainText("Sent");
  await expect(page.getByTestId("run-errors")).toBeVisible();
  await shot(page, "06-run-page");
  const [download] = await Promise.all([
    page.waitForEvent("download"),
    page.getByRole("link", { name: "Download CSV" }).click(),
  ]);
  expect(download.suggestedFilename()).toMatch(/^run-\d+-errors\.csv$/);
  const path = await download.path();
  const fs = await import("node:fs");
  const csv = fs.readFileSync(path!, "utf8");
  expect(csv.split("\n")[0]).toBe("profile_id,email,problem,field,reason");
  expect(csv).toMatch(/invalid_email|duplicate_email|no_email/);

  // The contacts are on the list, with the mapped names.
  const members = await sandbox(page, `/_sandbox/lists/${list.list_id}/members`);
  expect(members.count).toBeGreaterThan(0);
  const one = await sandbox(page, `/_sandbox/contacts?email=${encodeURIComponent(members.emails[0])}`);
  expect(one.fields.first_name).toBeTruthy();
  expect(one.fields.last_name).toBeTruthy();
  await signOut(page);
});

test("a slow run shows live progress and can be cancelled; a removed export's queued run is cancelled", async ({ page }) => {
  // The cancel waits for imports Constant Contact already has.
  test.setTimeout(180_000);
  // Constant Contact takes its time with imports.
  await setProcessingDelay(page, 30_000);
  await signIn(page, contributor);
  await open(page, "/data/exports");
  await page.getByRole("link", { name: "Newsletter" }).click();
  await expect(page.getByRole("heading", { name: "Newsletter" })).toBeVisible();
  // A full resend asks first.
  await page.getByRole("button", { name: "Full resend" }).click();
  const confirm = page.getByRole("alertdialog", { name: "Confirm full resend" });
  await confirm.getByRole("button", { name: "Cancel" }).click();
  await expect(confirm).toBeHidden();
  await page.getByRole("button", { name: "Full resend" }).click();
  await confirm.getByRole("button", { name: "Send everything again" }).click();
  // Live: the history shows the run running, without a reload.
  const latest = page.getByTestId("run-summary").first();
  await expect(latest.getByTestId("run-status")).toHaveText("Running", { timeout: 15_000 });
  await expect(latest.getByRole("progressbar")).toBeVisible();
  await shot(page, "06-run-in-progress");

  // A second export, queued behind the first on the one worker, is removed.
  const form = await (await page.request.post("/api/get_export_form")).json();
  const list = await customersList(page);
  const second = await page.request.post("/api/save_export", {
    form: {
      export: JSON.stringify({
        name: "Second",
        connection_id: form.connections[0].id,
        list_id: list.list_id,
        mapping: [{ source: "email", target: "email" }],
        segment_ids: [form.segments[0].id],
        on_schedule: false,
        remove_left: false,
        removal_limit_pct: 20,
      }),
    },
  });
  expect(second.ok(), await second.text()).toBeTruthy();
  const secondId = await second.json();
  const queued = await page.request.post("/api/run_export", { form: { id: String(secondId), mode: "incremental" } });
  expect(queued.ok(), await queued.text()).toBeTruthy();
  const runId = await queued.json();
  await open(page, "/data/exports");
  const secondRow = page.getByTestId("export-row").filter({ hasText: "Second" });
  await expect(secondRow.getByTestId("run-status")).toHaveText("Queued");
  await secondRow.getByRole("button", { name: "Remove" }).click();
  await page.getByRole("alertdialog", { name: "Confirm removal" }).getByRole("button", { name: "Remove export" }).click();
  await expect(page.getByTestId("export-row").filter({ hasText: "Second" })).toHaveCount(0);
  const run = await (await page.request.post("/api/get_run", { form: { id: String(runId), errors_page: "0" } })).json();
  expect(run.run.status).toBe("cancelled");

  // Cancel the running one from its page.
  const row = page.getByTestId("export-row").filter({ hasText: "Newsletter" });
  await row.getByRole("link", { name: /Run #\d+/ }).click();
  await page.getByRole("button", { name: "Cancel run" }).click();
  // It stops sending at once, but first settles the imports Constant
  // Contact already has (30 s each here): "Cancelling…" until then.
  await expect(page.getByTestId("run-status").first()).toHaveText(/Cancelling…|Cancelled/, { timeout: 15_000 });
  await expect(page.getByRole("button", { name: "Cancel run" })).toHaveCount(0);
  await expect(page.getByTestId("run-status").first()).toHaveText("Cancelled", { timeout: 90_000 });
  await expect(page.getByTestId("run-message")).toContainText("Cancelled");
  await shot(page, "06-run-cancelled");
  await setProcessingDelay(page, 20);
  await signOut(page);
});
