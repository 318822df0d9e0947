// Checks `chaosforge proxy` with the real toxiproxy-node-client (npm). Every API call goes
// through the client; faults are measured from plain sockets. Run by scripts/compat-toxiproxy.
"use strict";

const net = require("net");
const { Toxiproxy } = require("toxiproxy-node-client");

const failures = [];
function check(name, ok, detail) {
  console.log((ok ? "ok   " : "FAIL ") + name + (detail !== undefined ? ` (${detail})` : ""));
  if (!ok) failures.push(name);
}

function echoServer() {
  return new Promise((resolve) => {
    const srv = net.createServer((c) => c.pipe(c));
    srv.listen(0, "127.0.0.1", () => resolve(srv));
  });
}

function hostPort(listen) {
  const i = listen.lastIndexOf(":");
  return { host: listen.slice(0, i).replace(/^\[|\]$/g, ""), port: Number(listen.slice(i + 1)) };
}

function connect(listen) {
  return new Promise((resolve, reject) => {
    const s = net.connect(hostPort(listen));
    s.setNoDelay(true);
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

function rtt(sock) {
  return new Promise((resolve, reject) => {
    const start = process.hrtime.bigint();
    let got = 0;
    const onData = (d) => {
      got += d.length;
      if (got >= 4) {
        sock.off("data", onData);
        resolve(Number(process.hrtime.bigint() - start) / 1e6);
      }
    };
    sock.on("data", onData);
    sock.once("error", reject);
    sock.write("ping");
  });
}

// Writes `payload` and resolves with what comes back once as many bytes arrived, or with
// null after 5 s, so lost bytes fail a check instead of hanging the script.
function roundTrip(sock, payload) {
  return new Promise((resolve, reject) => {
    const parts = [];
    let got = 0;
    const timer = setTimeout(() => {
      sock.off("data", onData);
      resolve(null);
    }, 5000);
    const onData = (d) => {
      parts.push(d);
      got += d.length;
      if (got >= payload.length) {
        clearTimeout(timer);
        sock.off("data", onData);
        resolve(Buffer.concat(parts));
      }
    };
    sock.on("data", onData);
    sock.once("error", reject);
    sock.write(payload);
  });
}

async function refused(listen) {
  try {
    const s = await connect(listen);
    s.destroy();
    return false;
  } catch (e) {
    return e.code === "ECONNREFUSED";
  }
}

async function main() {
  const toxiproxy = new Toxiproxy("http://127.0.0.1:8474");
  const version = await toxiproxy.getVersion();
  check("version", version.includes("2.12.0"), version.trim());
  for (const p of Object.values(await toxiproxy.getAll())) await p.remove();

  const upstream = await echoServer();
  const up = `127.0.0.1:${upstream.address().port}`;
  const proxy = await toxiproxy.createProxy({ name: "node_echo", listen: "127.0.0.1:0", upstream: up });
  check("created with a concrete listen", !proxy.listen.endsWith(":0"), proxy.listen);

  const sock = await connect(proxy.listen);
  const base = await rtt(sock);
  check("forwards bytes", base < 100, `${base.toFixed(1)} ms`);

  const toxic = await proxy.addToxic({ type: "latency", attributes: { latency: 150, jitter: 0 } });
  check("toxic defaults", toxic.name === "latency_downstream" && toxic.stream === "downstream" && toxic.toxicity === 1,
    JSON.stringify(toxic.toJson()));
  const slow = await rtt(sock);
  check("latency measured", slow >= 140 && slow < 450, `${slow.toFixed(0)} ms`);

  const updated = await toxic.update({ attributes: { latency: 300 } });
  check("toxic update by POST keeps other attributes",
    updated.attributes.latency === 300 && updated.attributes.jitter === 0, JSON.stringify(updated.attributes));
  const slower = await rtt(sock);
  check("updated latency applies", slower >= 290 && slower < 700, `${slower.toFixed(0)} ms`);

  const fetched = await proxy.getToxic("latency_downstream");
  check("getToxic", fetched.attributes.latency === 300);
  await fetched.remove();
  const fast = await rtt(sock);
  check("toxic removed", fast < 100, `${fast.toFixed(0)} ms`);
  sock.destroy();

  const down = await proxy.update({ enabled: false });
  check("update enabled=false", down.enabled === false);
  check("disabled proxy refuses", await refused(proxy.listen));
  const upAgain = await proxy.update({ enabled: true });
  check("re-enabled on the same address", upAgain.listen === proxy.listen, upAgain.listen);
  const s2 = await connect(proxy.listen);
  check("works after re-enable", (await rtt(s2)) < 100);
  s2.destroy();

  await proxy.addToxic({ type: "slow_close", attributes: { delay: 10 } });
  await proxy.update({ enabled: false });
  await toxiproxy.reset();
  const afterReset = await toxiproxy.get("node_echo");
  const left = await (await fetch("http://127.0.0.1:8474/proxies/node_echo/toxics")).json();
  check("reset re-enables and clears toxics", afterReset.enabled === true && left.length === 0,
    JSON.stringify(left));

  const populated = await toxiproxy.populate([{ name: "node_pop", listen: "127.0.0.1:0", upstream: up }]);
  check("populate", populated.node_pop !== undefined && populated.node_pop.enabled === true);

  let threw = false;
  try {
    await proxy.addToxic({ type: "slicer", attributes: { average_size: 0, size_variation: 0, delay: 0 } });
  } catch (e) {
    threw = true;
  }
  check("slicer average_size 0 refused", threw);

  // The attributes toxiproxy-node-client's own suite creates and expects back; Toxiproxy
  // accepts a size_variation as large as average_size, so chaosforge must too.
  const slicer = await proxy.addToxic({
    type: "slicer",
    attributes: { average_size: 1000, delay: 1000, size_variation: 1000 },
  });
  check("slicer size_variation = average_size echoed",
    slicer.attributes.average_size === 1000 && slicer.attributes.size_variation === 1000 &&
      slicer.attributes.delay === 1000, JSON.stringify(slicer.attributes));
  const payload = Buffer.alloc(20000);
  for (let i = 0; i < payload.length; i++) payload[i] = i % 251;
  const s3 = await connect(proxy.listen);
  const back = await roundTrip(s3, payload);
  check("slicer delivers the bytes intact", back !== null && back.equals(payload),
    back === null ? "timed out" : `${back.length} bytes`);
  s3.destroy();
  await slicer.remove();
  check("server alive", (await toxiproxy.get("node_echo")).name === "node_echo");

  for (const p of Object.values(await toxiproxy.getAll())) await p.remove();
  check("all removed", Object.keys(await toxiproxy.getAll()).length === 0);
  check("removed proxy refuses", await refused(proxy.listen));
  upstream.close();

  if (failures.length) {
    console.log(`${failures.length} check(s) failed: ${failures.join(", ")}`);
    process.exit(1);
  }
}

main().catch((e) => {
  console.log("FAIL unexpected error: " + (e && e.stack ? e.stack : e));
  process.exit(1);
});
