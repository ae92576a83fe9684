// amqp091_go_roundtrip.go -- Go's amqp091-go (Debian golang-github-rabbitmq-amqp091-go-dev)
// against kbridged's AMQP 0-9-1 port (tests/integration/test_amqp091_clients.py), built by
// the test with GO111MODULE=off and GOPATH=/usr/share/gocode: Confirm, then publish COUNT
// messages and one mandatory message to a key no queue is bound to, every confirmation
// read from NotifyPublish (the library puts them back in tag order) and the unroutable one
// from NotifyReturn (312 NO_ROUTE), then consume with Qos(10) and an Ack per delivery.
// Prints one JSON line.
//
// Not PublishWithDeferredConfirm: this version (Debian's) sends the frames before it
// registers the deferred confirmation, so an ack that comes back at once (an unroutable
// message is acked without a Kafka round trip) can be dropped and Wait never returns;
// NotifyPublish does not lose it.
//
//	go run amqp091_go_roundtrip.go URL QUEUE COUNT
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func main() {
	url, queue := os.Args[1], os.Args[2]
	count, _ := strconv.Atoi(os.Args[3])
	conn, err := amqp.Dial(url)
	if err != nil {
		fail("dial: %v", err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		fail("channel: %v", err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		fail("queue.declare: %v", err)
	}
	if err := ch.Confirm(false); err != nil {
		fail("confirm.select: %v", err)
	}
	returns := ch.NotifyReturn(make(chan amqp.Return, 1))
	confirmations := ch.NotifyPublish(make(chan amqp.Confirmation, count+1))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < count; i++ {
		err := ch.PublishWithContext(ctx, "", queue, false, false, amqp.Publishing{
			ContentType: "text/plain", DeliveryMode: amqp.Persistent, MessageId: fmt.Sprintf("go-%d", i),
			Headers: amqp.Table{"lang": "go"}, Body: []byte(fmt.Sprintf("go message %d", i))})
		if err != nil {
			fail("publish: %v", err)
		}
	}
	// mandatory, to a key nothing is bound to: basic.return, then its confirm
	if err := ch.PublishWithContext(ctx, "amq.direct", "nowhere-"+queue, true, false,
		amqp.Publishing{Body: []byte("unroutable")}); err != nil {
		fail("mandatory publish: %v", err)
	}
	confirmed := 0
	for tag := uint64(1); tag <= uint64(count+1); tag++ {
		select {
		case c := <-confirmations:
			if c.DeliveryTag != tag {
				fail("confirmation %d came as tag %d", tag, c.DeliveryTag)
			}
			if c.Ack && tag <= uint64(count) {
				confirmed++
			}
		case <-ctx.Done():
			fail("%d of %d confirmations", tag-1, count+1)
		}
	}
	var returned amqp.Return
	select {
	case returned = <-returns:
	case <-ctx.Done():
		fail("no basic.return")
	}

	if err := ch.Qos(10, 0, false); err != nil {
		fail("qos: %v", err)
	}
	deliveries, err := ch.Consume(queue, "", false, false, false, false, nil)
	if err != nil {
		fail("consume: %v", err)
	}
	seen := map[string]bool{}
	redelivered := 0
	ids := 0
	for len(seen) < count {
		select {
		case d := <-deliveries:
			if d.Redelivered {
				redelivered++
			}
			if d.MessageId == "go-"+string(d.Body[len("go message "):]) && d.Headers["lang"] == "go" &&
				d.ContentType == "text/plain" && d.DeliveryMode == amqp.Persistent {
				ids++
			}
			seen[string(d.Body)] = true
			if err := d.Ack(false); err != nil {
				fail("ack: %v", err)
			}
		case <-ctx.Done():
			fail("received %d of %d", len(seen), count)
		}
	}
	if err := ch.Close(); err != nil { // close-ok: every ack before it was processed
		fail("channel.close: %v", err)
	}
	out, _ := json.Marshal(map[string]interface{}{
		"confirmed": confirmed, "received": len(seen), "redelivered": redelivered,
		"properties_intact": ids, "returned_code": returned.ReplyCode, "returned_text": returned.ReplyText,
		"returned_body": string(returned.Body)})
	fmt.Println(string(out))
}
