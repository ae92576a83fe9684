#!/usr/bin/env ruby
# A send / subscribe / ack round trip with ruby-stomp (Debian's ruby-stomp),
# written as an application for RabbitMQ or ActiveMQ would be. Prints one
# line per event so that the test can check what it did and got:
#
#   CONNECTED <version> <server>
#   SUBSCRIBED <receipt-id>
#   SENT <receipt-id>
#   MESSAGE <body> destination=<d> subscription=<s> count=<x-delivery-count> redelivered=<r> colour=<c>
#   NACK <body> / ACK <body>
#   DISCONNECTED <receipt-id>
#
# Usage: ruby_roundtrip.rb HOST PORT DESTINATION COUNT
# The first delivery of the first message is NACKed (requeue), so it comes
# back once with redelivered:true; every delivery after that is ACKed.
require 'stomp'

host, port, destination, count = ARGV[0], Integer(ARGV[1]), ARGV[2], Integer(ARGV[3])
$stdout.sync = true

conn = Stomp::Connection.new(
  hosts: [{ login: '', passcode: '', host: host, port: port }],
  connect_headers: { 'accept-version' => '1.2', 'host' => 'localhost',
                     'heart-beat' => '0,0' },
  reliable: false, connect_timeout: 10, connread_timeout: 10, parse_timeout: 30
)
frame = conn.connection_frame
abort "CONNECT failed: #{frame.command} #{frame.headers['message']}" unless frame.command == 'CONNECTED'
puts "CONNECTED #{frame.headers['version']} #{frame.headers['server']}"

def expect_frame(conn, command)
  frame = conn.receive
  abort 'connection closed' unless frame
  if frame.command != command
    abort "expected #{command}, got #{frame.command}: #{frame.headers['message']} #{frame.body}"
  end
  frame
end

conn.subscribe(destination, { 'id' => 'rb-1', 'ack' => 'client-individual',
                              'prefetch-count' => '10', 'receipt' => 'sub-1' })
puts "SUBSCRIBED #{expect_frame(conn, 'RECEIPT').headers['receipt-id']}"

count.times do |i|
  conn.publish(destination, "ruby-#{i}", { 'receipt' => "send-#{i}", 'kafka-key' => 'rb',
                                           'colour' => (i.even? ? 'red' : 'blue'),
                                           'content-type' => 'text/plain' })
end

pending_receipts = count
wanted = count + 1 # one redelivery
nacked = false
while pending_receipts > 0 || wanted > 0
  frame = conn.receive
  abort 'connection closed' unless frame
  case frame.command
  when 'RECEIPT'
    puts "SENT #{frame.headers['receipt-id']}"
    pending_receipts -= 1
  when 'MESSAGE'
    h = frame.headers
    puts "MESSAGE #{frame.body} destination=#{h['destination']} subscription=#{h['subscription']} " \
         "count=#{h['x-delivery-count']} redelivered=#{h['redelivered'] || 'false'} colour=#{h['colour']}"
    wanted -= 1
    if !nacked && frame.body == 'ruby-0'
      nacked = true
      conn.nack(h['ack'])
      puts "NACK #{frame.body}"
    else
      conn.ack(h['ack'])
      puts "ACK #{frame.body}"
    end
  else
    abort "unexpected #{frame.command}: #{frame.headers['message']} #{frame.body}"
  end
end

conn.disconnect({ 'receipt' => 'bye' })
puts "DISCONNECTED #{conn.disconnect_receipt.headers['receipt-id']}"
