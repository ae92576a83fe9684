# bunny_recovery.rb -- Bunny (ruby-bunny) against kbridged's AMQP 0-9-1 port
# (tests/integration/test_amqp091_clients.py): a confirmed publish / manual-ack
# consume round trip, then Bunny's automatic connection recovery across a
# kbridged restart: the test restarts kbridged on the same port after this
# script prints "phase1 ..." and writes a line to its stdin; Bunny reconnects,
# re-opens the channel in confirm mode, re-declares the queue, re-registers
# the consumer, and the second batch goes through the same objects.
#
#   ruby bunny_recovery.rb URL QUEUE COUNT
# prints "phase1 {json}" and "done {json}" lines.
require "bunny"
require "json"

url, queue_name, count = ARGV[0], ARGV[1], Integer(ARGV[2])
$stdout.sync = true

conn = Bunny.new(url, automatically_recover: true, network_recovery_interval: 0.5,
                      recovery_attempts: 60, heartbeat: 10, continuation_timeout: 30_000,
                      logger: Logger.new($stderr, level: Logger::WARN))
recovered = false
conn.after_recovery_completed { recovered = true }
conn.start
ch = conn.create_channel
ch.confirm_select
queue = ch.queue(queue_name, durable: true)

lock = Mutex.new
received = []
redelivered = 0
content_types = []
consumer = queue.subscribe(manual_ack: true) do |info, props, body|
  lock.synchronize do
    received << body
    redelivered += 1 if info.redelivered?
    content_types << props.content_type
  end
  ch.ack(info.delivery_tag)
end

def wait_until(seconds, what)
  deadline = Time.now + seconds
  until yield
    raise "timed out waiting for #{what}" if Time.now > deadline
    sleep 0.02
  end
end

# every_message: wait for each confirm before the next publish. Bunny 2.19
# adds its post-recovery delivery-tag offset twice to an ack with `multiple`
# (Channel#handle_ack_or_nack: range start = offset + unconfirmed_set.min,
# whose tags already include the offset), so after a recovery such an ack
# confirms nothing and wait_for_confirms times out. kbridged coalesces
# consecutive confirms into one `multiple` ack (as RabbitMQ does), so the
# batch after the recovery keeps one confirm in flight at a time.
def publish_batch(ch, queue_name, prefix, count, every_message: false)
  count.times do |i|
    ch.default_exchange.publish("#{prefix} #{i}", routing_key: queue_name, persistent: true,
                                content_type: "text/plain", message_id: "#{prefix}-#{i}",
                                headers: { "batch" => prefix })
    if every_message
      ch.wait_for_confirms or raise "#{prefix} #{i}: nacked #{ch.nacked_set.to_a.inspect}"
    end
  end
  ch.wait_for_confirms or raise "#{prefix}: nacked #{ch.nacked_set.to_a.inspect}"
end

publish_batch(ch, queue_name, "before", count)
wait_until(60, "the first batch") { lock.synchronize { received.count { |b| b.start_with?("before") } >= count } }
puts "phase1 " + JSON.generate(received: received.size, redelivered: redelivered)

$stdin.gets # the test restarted kbridged
# Bunny re-opens the connection, then the channel (confirm mode), the queue
# and the consumer; publishing before it says it is done would race its
# handshake (a frame on a channel before connection.open-ok is an error)
wait_until(60, "the connection to recover") { recovered && conn.open? && ch.open? }
publish_batch(ch, queue_name, "after", count, every_message: true)
wait_until(60, "the second batch") { lock.synchronize { received.count { |b| b.start_with?("after") } >= count } }
lock.synchronize do
  puts "done " + JSON.generate(received: received, redelivered: redelivered,
                               content_types: content_types.uniq)
end
consumer.cancel
conn.close
