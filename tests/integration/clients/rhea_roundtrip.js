// SPDX-License-Identifier: Apache-2.0
// rhea_roundtrip.js -- a second AMQP 1.0 client library (rhea, Node.js)
// against kbridged: send COUNT messages unsettled to ADDRESS, wait for every
// `accepted`, then receive them all on a receiver with a credit window and
// accept each. Prints one JSON summary line; exits 1 on an error or timeout.
// Usage: node rhea_roundtrip.js HOST PORT ADDRESS COUNT
'use strict';
const rhea = require('rhea');

const [host, port, address, countText] = process.argv.slice(2);
const count = parseInt(countText, 10);
const summary = { sent: 0, accepted: 0, rejected: 0, received: 0, bodies: [], ids: [] };
const container = rhea.create_container({ id: 'rhea-roundtrip' });
const timer = setTimeout(() => finish('timeout'), 60000);

function finish(error) {
  clearTimeout(timer);
  if (error) summary.error = String(error);
  console.log(JSON.stringify(summary));
  process.exit(error ? 1 : 0);
}

container.on('connection_open', (context) => {
  const sender = context.connection.open_sender({ target: { address } });
  sender.on('sendable', () => {
    while (sender.sendable() && summary.sent < count) {
      sender.send({ message_id: `rhea-${summary.sent}`, body: `rhea message ${summary.sent}`,
                    application_properties: { n: summary.sent } });
      summary.sent++;
    }
  });
  sender.on('accepted', () => {
    summary.accepted++;
    if (summary.accepted === count) {
      const receiver = context.connection.open_receiver({ source: { address }, credit_window: 10,
                                                          autoaccept: false });
      receiver.on('message', (ctx) => {
        summary.received++;
        summary.bodies.push(ctx.message.body);
        summary.ids.push(ctx.message.message_id);
        ctx.delivery.accept();
        if (summary.received === count) {
          context.connection.close();
        }
      });
    }
  });
  sender.on('rejected', (ctx) => { summary.rejected++; finish(`rejected: ${JSON.stringify(ctx.delivery.remote_state)}`); });
});
container.on('connection_close', () => finish(summary.received === count ? null : 'closed early'));
container.on('error', (error) => finish(error));
container.on('disconnected', (context) => {
  if (summary.received !== count) finish(context.error || 'disconnected');
});
container.connect({ host, port: parseInt(port, 10), reconnect: false });
