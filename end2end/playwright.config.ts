import { defineConfig } from "@playwright/test";

// Run by `cargo xtask test`, which builds the server and sets these.
const baseURL = process.env.BASE_URL ?? "http://127.0.0.1:3000";
const port = process.env.SERVER_PORT ?? "3000";
const dataDir = process.env.SERVER_DATA_DIR ?? "/tmp/segment-export-e2e";
const sandboxPort = process.env.SANDBOX_PORT ?? "3030";
const sandboxURL = `http://127.0.0.1:${sandboxPort}`;

export default defineConfig({
  testDir: "./tests",
  // The suite walks one installation through its life (first run, users,
  // roles), so its files run in order, one at a time.
  workers: 1,
  fullyParallel: false,
  forbidOnly: !!process.env.CI,
  retries: 0,
  timeout: 60_000,
  outputDir: "test-results/artifacts",
  reporter: [["list"], ["json", { outputFile: "test-results/results.json" }]],
  use: {
    baseURL,
    screenshot: "on",
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: [
    {
      // The Constant Contact sandbox, with our callback registered.
      command: process.env.SANDBOX_BIN ?? "../target/debug/sandbox",
      url: `${sandboxURL}/_sandbox/faults`,
      reuseExistingServer: false,
      timeout: 60_000,
      env: {
        SANDBOX_PORT: sandboxPort,
        SANDBOX_CLIENTS: `segment-export-demo:demo-client-secret:${baseURL}/oauth/constant-contact/callback`,
        SANDBOX_PROCESSING_DELAY_MS: "20",
        RUST_LOG: "warn",
      },
    },
    {
      command: process.env.SERVER_BIN ?? "../target/debug/server",
      url: `${baseURL}/health`,
      reuseExistingServer: false,
      timeout: 60_000,
      stdout: "pipe",
      stderr: "pipe",
      env: {
        DATABASE_URL: `sqlite://${dataDir}/e2e.db`,
        DATA_DIR: dataDir,
        LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
        LEPTOS_SITE_ROOT: process.env.LEPTOS_SITE_ROOT ?? "../target/site",
        RUST_LOG: "warn",
        CC_CLIENT_ID: "segment-export-demo",
        CC_CLIENT_SECRET: "demo-client-secret",
        CC_SANDBOX_URL: sandboxURL,
        CC_REDIRECT_URL: `${baseURL}/oauth/constant-contact/callback`,
        DEMO_PROFILES_ON_EMPTY: "300",
        // One worker: a second run waits in the queue while the first runs.
        WORKERS: "1",
        RUN_LEASE_SECONDS: "5",
    },
    },
  ],
});
