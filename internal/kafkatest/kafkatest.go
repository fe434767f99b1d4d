// Package kafkatest is what the Kafka tests of several packages share: a
// unique topic per test, and the choice between the in-process broker and
// a real cluster named by ONESTONE_KAFKA_BROKERS.
package kafkatest

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/segmentio/kafka-go"
)

// EnvBrokers names the environment variable that points tests at a real
// cluster (comma-separated host:port).
const EnvBrokers = "ONESTONE_KAFKA_BROKERS"

var seq atomic.Int64

// Cluster returns the brokers to test against and a topic unique to the
// test (prefix, the process and the test's name): the cluster in
// ONESTONE_KAFKA_BROKERS, where the topic is created with the given
// partition count, or else the brokers embedded returns (which starts an
// in-process broker holding the topic and arranges its own cleanup).
func Cluster(t testing.TB, prefix string, partitions int, embedded func(topic string) []string) (brokers []string, topic string) {
	t.Helper()
	topic = fmt.Sprintf("%s-%d-%d-%s", prefix, os.Getpid(), seq.Add(1), strings.ReplaceAll(t.Name(), "/", "_"))
	if env := os.Getenv(EnvBrokers); env != "" {
		brokers = strings.Split(env, ",")
		CreateTopic(t, brokers[0], topic, partitions)
		return brokers, topic
	}
	return embedded(topic), topic
}

// CreateTopic creates a topic through the cluster's controller (a real
// cluster's default partition count may be 1).
func CreateTopic(t testing.TB, broker, topic string, partitions int) {
	t.Helper()
	conn, err := kafka.Dial("tcp", broker)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		t.Fatal(err)
	}
	cc, err := kafka.Dial("tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	if err := cc.CreateTopics(kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}); err != nil {
		t.Fatal(err)
	}
}
