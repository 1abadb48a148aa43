// Command validate reads the manifests `helm template` renders (stdin) and checks each against the
// Kubernetes API types it names: strict decoding refuses an unknown field, a field of the wrong type
// and a duplicate field, as the API server would. ServiceMonitor and PrometheusRule are checked
// against the Prometheus Operator's types. Then the chart's own rules: every container of the mesh
// runs as non-root with a read-only root filesystem, no privilege escalation and all capabilities
// dropped, with resources and probes, and no secret-looking variable carries a literal value.
//
//	helm template ... | validate
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

var secretName = regexp.MustCompile(`(TOKEN|SECRET|PASSWORD|_KEY)$`)

func main() {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, batchv1.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, networkingv1.AddToScheme, monitoringv1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			fail(err)
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	reader := utilyaml.NewYAMLReader(bufio.NewReader(os.Stdin))
	kinds := map[string]int{}
	var problems []string
	docs := 0
	for {
		raw, err := reader.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail(err)
		}
		if len(bytes.TrimSpace(stripComments(raw))) == 0 {
			continue
		}
		docs++
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(raw, &head); err != nil {
			problems = append(problems, fmt.Sprintf("document %d: not YAML: %v", docs, err))
			continue
		}
		where := fmt.Sprintf("%s %s", head.Kind, head.Metadata.Name)
		obj, _, err := decoder.Decode(raw, nil, nil)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		kinds[head.Kind]++
		for _, p := range check(obj) {
			problems = append(problems, fmt.Sprintf("%s: %s", where, p))
		}
	}
	var seen []string
	for k, n := range kinds {
		seen = append(seen, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(seen)
	if docs == 0 {
		problems = append(problems, "no manifests on stdin")
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(os.Stderr, "  "+p)
		}
		fail(fmt.Errorf("%d problems in %d manifests", len(problems), docs))
	}
	fmt.Printf("%d manifests valid (%s)\n", docs, strings.Join(seen, ", "))
}

func stripComments(b []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(b, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

// check applies the chart's own rules to the pods of workloads.
func check(obj runtime.Object) []string {
	var pod *corev1.PodSpec
	long := false
	switch o := obj.(type) {
	case *appsv1.Deployment:
		pod, long = &o.Spec.Template.Spec, true
		if o.Spec.Strategy.RollingUpdate == nil {
			return []string{"no rolling update strategy"}
		}
	case *batchv1.Job:
		pod = &o.Spec.Template.Spec
	default:
		return nil
	}
	var problems []string
	psc := pod.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
		problems = append(problems, "pod does not require a non-root user")
	}
	if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		problems = append(problems, "pod has no RuntimeDefault seccomp profile")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		problems = append(problems, "pod mounts a service account token it never uses")
	}
	for _, c := range pod.Containers {
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			problems = append(problems, c.Name+": root filesystem not read-only")
		}
		if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			problems = append(problems, c.Name+": privilege escalation not refused")
		}
		if sc == nil || sc.Capabilities == nil || len(sc.Capabilities.Drop) == 0 || sc.Capabilities.Drop[0] != "ALL" {
			problems = append(problems, c.Name+": capabilities not all dropped")
		}
		if c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			problems = append(problems, c.Name+": no memory request and limit")
		}
		if long && (c.ReadinessProbe == nil || c.LivenessProbe == nil || c.StartupProbe == nil) {
			problems = append(problems, c.Name+": a startup, liveness or readiness probe is missing")
		}
		for _, e := range c.Env {
			if secretName.MatchString(e.Name) && e.Value != "" {
				problems = append(problems, c.Name+": "+e.Name+" has a literal value (read it from a Secret)")
			}
		}
	}
	return problems
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "validate:", err)
	os.Exit(1)
}
