// PublishConfirm.java -- the RabbitMQ Java client (Debian librabbitmq-client-java)
// against kbridged's AMQP 0-9-1 port (tests/integration/test_amqp091_clients.py),
// compiled by the test with javac: publish COUNT persistent messages on a
// confirm channel, waitForConfirmsOrDie after each batch of 100 and at the end,
// then consume them with basicQos(10) and a manual basicAck per delivery.
// Prints one JSON line: confirmed, received, redelivered, bodies' checksum and
// the properties of the first delivery.
//
//   java -cp amqp-client.jar:slf4j-api.jar:DIR PublishConfirm URI QUEUE COUNT
import com.rabbitmq.client.*;

import java.nio.charset.StandardCharsets;
import java.util.*;
import java.util.concurrent.*;

public class PublishConfirm {
    public static void main(String[] args) throws Exception {
        String uri = args[0], queue = args[1];
        int count = Integer.parseInt(args[2]);
        ConnectionFactory factory = new ConnectionFactory();
        factory.setUri(uri);
        factory.setAutomaticRecoveryEnabled(false);
        try (Connection connection = factory.newConnection("kbridge-java-test")) {
            Channel publisher = connection.createChannel();
            publisher.queueDeclare(queue, true, false, false, null);
            publisher.confirmSelect();
            Map<String, Object> headers = new HashMap<>();
            headers.put("client", "java");
            int confirmed = 0;
            for (int i = 0; i < count; i++) {
                AMQP.BasicProperties props = new AMQP.BasicProperties.Builder()
                        .contentType("text/plain").deliveryMode(2).messageId("java-" + i)
                        .correlationId("corr-" + i).headers(headers).build();
                publisher.basicPublish("", queue, props,
                        ("java message " + i).getBytes(StandardCharsets.UTF_8));
                if ((i + 1) % 100 == 0 || i + 1 == count) {
                    publisher.waitForConfirmsOrDie(30000); // throws on a nack or a timeout
                    confirmed = i + 1;
                }
            }

            Channel consumer = connection.createChannel();
            consumer.basicQos(10);
            Set<String> bodies = ConcurrentHashMap.newKeySet();
            List<String> first = new CopyOnWriteArrayList<>();
            int[] redelivered = {0};
            CountDownLatch done = new CountDownLatch(count);
            consumer.basicConsume(queue, false, new DefaultConsumer(consumer) {
                @Override
                public void handleDelivery(String tag, Envelope envelope,
                                           AMQP.BasicProperties props, byte[] body)
                        throws java.io.IOException {
                    String text = new String(body, StandardCharsets.UTF_8);
                    if (envelope.isRedeliver())
                        redelivered[0]++;
                    if (first.isEmpty())
                        first.addAll(Arrays.asList(text, props.getContentType(), props.getMessageId(),
                                props.getCorrelationId(), String.valueOf(props.getDeliveryMode()),
                                String.valueOf(props.getHeaders().get("client"))));
                    // ack first: the main thread closes the channel once the last counts down
                    getChannel().basicAck(envelope.getDeliveryTag(), false);
                    if (bodies.add(text))
                        done.countDown();
                }
            });
            boolean all = done.await(60, TimeUnit.SECONDS);
            consumer.close(); // close-ok: every ack before it was processed
            publisher.close();
            StringBuilder firstJson = new StringBuilder("[");
            for (int i = 0; i < first.size(); i++)
                firstJson.append(i > 0 ? "," : "").append('"').append(first.get(i)).append('"');
            firstJson.append(']');
            System.out.println("{\"confirmed\":" + confirmed + ",\"received\":" + bodies.size()
                    + ",\"all\":" + all + ",\"redelivered\":" + redelivered[0]
                    + ",\"first\":" + firstJson + "}");
        }
    }
}
