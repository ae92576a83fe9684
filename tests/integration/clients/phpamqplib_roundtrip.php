<?php
// phpamqplib_roundtrip.php -- php-amqplib (Debian php-amqplib) against kbridged's AMQP
// 0-9-1 port (tests/integration/test_amqp091_clients.py): publisher confirms through
// set_ack_handler / set_nack_handler and wait_for_pending_acks_returns, a mandatory
// unroutable message back through set_return_listener, logging in with AMQPLAIN (the
// library's default mechanism), then basic_consume with basic_qos(10) and an ack per
// delivery. Prints one JSON line.
//
//   php phpamqplib_roundtrip.php HOST PORT USER PASSWORD QUEUE COUNT
require_once '/usr/share/php/PhpAmqpLib/autoload.php';

use PhpAmqpLib\Connection\AMQPStreamConnection;
use PhpAmqpLib\Message\AMQPMessage;
use PhpAmqpLib\Wire\AMQPTable;

[$_, $host, $port, $user, $password, $queue, $count] = $argv;
$count = (int)$count;
$connection = new AMQPStreamConnection($host, (int)$port, $user, $password, '/', false, 'AMQPLAIN',
                                       null, 'en_US', 10.0, 30.0);
$channel = $connection->channel();
$channel->queue_declare($queue, false, true, false, false);

$acked = 0;
$nacked = 0;
$returned = [];
$channel->set_ack_handler(function (AMQPMessage $m) use (&$acked) { $acked++; });
$channel->set_nack_handler(function (AMQPMessage $m) use (&$nacked) { $nacked++; });
$channel->set_return_listener(function ($code, $text, $exchange, $key, AMQPMessage $m) use (&$returned) {
    $returned = [$code, $text, $m->getBody()];
});
$channel->confirm_select();
for ($i = 0; $i < $count; $i++) {
    $message = new AMQPMessage("php message $i", [
        'content_type' => 'text/plain', 'delivery_mode' => AMQPMessage::DELIVERY_MODE_PERSISTENT,
        'message_id' => "php-$i", 'application_headers' => new AMQPTable(['lang' => 'php'])]);
    $channel->basic_publish($message, '', $queue);
}
$channel->basic_publish(new AMQPMessage('unroutable'), 'amq.direct', "nowhere-$queue", true);
$channel->wait_for_pending_acks_returns(30.0);

$bodies = [];
$intact = 0;
$check = function (AMQPMessage $m) use (&$bodies, &$intact) {
    $body = $m->getBody();
    $bodies[$body] = true;
    $headers = $m->get('application_headers')->getNativeData();
    if ($m->get('message_id') === 'php-' . substr($body, strlen('php message ')) &&
        $m->get('content_type') === 'text/plain' && $headers['lang'] === 'php')
        $intact++;
};
$channel->basic_qos(0, 10, false);
$channel->basic_consume($queue, '', false, false, false, false, function (AMQPMessage $m) use ($check) {
    $check($m);
    $m->ack();
});
while (count($bodies) < $count)
    $channel->wait(null, false, 30.0);
$channel->close();
$connection->close();
echo json_encode(['confirmed' => $acked, 'nacked' => $nacked, 'returned' => $returned,
                  'received' => count($bodies), 'intact' => $intact]), "\n";
