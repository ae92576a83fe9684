// SPDX-License-Identifier: Apache-2.0
// rhea_selector.js -- rhea's selector idiom (rhea.filter.selector, the
// jms-selector filter with code 0x468C00000004, as in rhea's own selector
// example) against kbridged: a receiver on ADDRESS with the selector
// "colour = 'green'" attaches, then a sender sends COUNT messages whose
// application property `colour` cycles red, green, blue; the receiver
// accepts what it gets until COUNT/3 greens arrived, then waits QUIET_MS for
// anything more. Prints one JSON summary line; exits 1 on an error or timeout.
// Usage: node rhea_selector.js HOST PORT ADDRESS COUNT
'use strict';
const rhea = require('rhea');

const [host, port, address, countText] = process.argv.slice(2);
const count = parseInt(countText, 10);
const colours = ['red', 'green', 'blue'];
const wanted = Math.floor((count + 1) / 3);
const QUIET_MS = 1500;
const summary = { sent: 0, accepted: 0, received: [], filter_echoed: false };
const container = rhea.create_container({ id: 'rhea-selector' });
const timer = setTimeout(() => finish('timeout'), 60000);

function finish(error) {
  clearTimeout(timer);
  if (error) summary.error = String(error);
  console.log(JSON.stringify(summary));
  process.exit(error ? 1 : 0);
}

container.on('connection_open', (context) => {
  const receiver = context.connection.open_receiver({
    source: { address, filter: rhea.filter.selector("colour = 'green'") },
    credit_window: 50,
  });
  receiver.on('receiver_open', () => {
    const source = receiver.remote.attach && receiver.remote.attach.source;
    summary.filter_echoed = !!(source && source.filter && source.filter['jms-selector']);
    const sender = context.connection.open_sender({ target: { address } });
    sender.on('sendable', () => {
      while (sender.sendable() && summary.sent < count) {
        const n = summary.sent++;
        sender.send({ body: `m${n}`, application_properties: { colour: colours[n % 3], n } });
      }
    });
    sender.on('accepted', () => { summary.accepted++; });
    sender.on('rejected', (ctx) => finish(`rejected: ${JSON.stringify(ctx.delivery.remote_state)}`));
  });
  receiver.on('message', (ctx) => {
    summary.received.push(ctx.message.body);
    if (summary.received.length === wanted) {
      setTimeout(() => context.connection.close(), QUIET_MS); // anything more would arrive now
    }
  });
});
container.on('connection_close', () => finish(null));
container.on('error', (error) => finish(error));
container.on('disconnected', (context) => finish(context.error || 'disconnected'));
container.connect({ host, port: parseInt(port, 10), reconnect: false });
