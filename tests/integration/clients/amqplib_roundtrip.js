// SPDX-License-Identifier: Apache-2.0
// amqplib_roundtrip.js -- a second AMQP 0-9-1 client library (amqplib,
// Node.js) against kbridged: on a ConfirmChannel (amqplib's publisher
// confirms), declare a direct exchange and a queue bound to it, publish
// COUNT messages and wait for every confirm; then consume them on a channel
// of its own with prefetch 10 and manual acks. Prints one JSON summary line;
// exits 1 on an error or timeout.
// Usage: node amqplib_roundtrip.js URL EXCHANGE QUEUE COUNT
'use strict';
const amqp = require('amqplib');

const [url, exchange, queue, countText] = process.argv.slice(2);
const count = parseInt(countText, 10);
const summary = { confirmed: 0, nacked: 0, received: 0, redelivered: 0, bodies: [], ids: [],
                  types: [] };
const timer = setTimeout(() => finish('timeout'), 60000);
let connection;

function finish(error) {
  clearTimeout(timer);
  if (error) summary.error = String(error && error.stack ? error.stack : error);
  console.log(JSON.stringify(summary));
  process.exit(error ? 1 : 0);
}

async function main() {
  connection = await amqp.connect(url);
  connection.on('error', finish);
  const publisher = await connection.createConfirmChannel();
  await publisher.assertExchange(exchange, 'direct', { durable: true });
  await publisher.assertQueue(queue, { durable: true });
  await publisher.bindQueue(queue, exchange, 'k');

  const consumer = await connection.createChannel();
  await consumer.prefetch(10);
  const done = new Promise((resolve) => {
    consumer.consume(queue, (msg) => {
      summary.received++;
      if (msg.fields.redelivered) summary.redelivered++;
      summary.bodies.push(msg.content.toString());
      summary.ids.push(msg.properties.messageId);
      summary.types.push(msg.properties.type);
      consumer.ack(msg);
      if (summary.received === count) resolve();
    }, { noAck: false });
  });

  for (let i = 0; i < count; i++) {
    publisher.publish(exchange, 'k', Buffer.from(`amqplib message ${i}`),
                      { messageId: `amqplib-${i}`, type: 'demo', headers: { n: i } },
                      (err) => { if (err) summary.nacked++; else summary.confirmed++; });
  }
  await publisher.waitForConfirms();
  await done;
  await connection.close();
  finish(null);
}

main().catch(finish);
