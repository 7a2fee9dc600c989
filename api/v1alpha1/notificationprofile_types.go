package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// ChatFormat is the body a chat webhook accepts.
// +kubebuilder:validation:Enum=Slack;Mattermost;Teams;JSON
type ChatFormat string

// Chat formats.
const (
	// ChatSlack posts {"text": …} in Slack's mrkdwn, as Slack's incoming webhooks take it.
	ChatSlack ChatFormat = "Slack"
	// ChatMattermost posts {"text": …, "username": "gpuwarden"} in Markdown, as
	// Mattermost's incoming webhooks take it.
	ChatMattermost ChatFormat = "Mattermost"
	// ChatTeams posts a message with one Adaptive Card, as Microsoft Teams' Workflows
	// webhooks ("When a Teams webhook request is received") take it.
	ChatTeams ChatFormat = "Teams"
	// ChatJSON posts the notice itself, the format of a ContainerPolicy's webhook.
	ChatJSON ChatFormat = "JSON"
)

// Webhook is a chat webhook that receives a user's notices.
type Webhook struct {
	// url receives a POST for each notice. A loopback or link-local address is refused
	// unless gpuwarden runs with --allow-local-webhooks.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=2048
	// +kubebuilder:validation:XValidation:rule="isURL(self) && (url(self).getScheme() == 'https' || url(self).getScheme() == 'http')",message="url must be an http or https URL"
	URL string `json:"url"`

	// format is the body the webhook accepts: Slack, Mattermost, Teams or JSON.
	// +optional
	// +kubebuilder:default=JSON
	Format ChatFormat `json:"format,omitempty"`
}

// NotificationProfileSpec says where one user's notices go, besides the notice file in
// the container and the policy's webhook.
type NotificationProfileSpec struct {
	// user is the login whose notices these are.
	// +required
	// +kubebuilder:validation:MinLength=1
	// +kubebuilder:validation:MaxLength=256
	// +kubebuilder:validation:Pattern=`^[A-Za-z0-9_][A-Za-z0-9_.@$-]*$`
	User string `json:"user"`

	// email is the address notices are mailed to, in place of the one the server's
	// --notify-email-template makes of the login. Mail goes out only when the server has
	// an --smtp-server.
	// +optional
	// +kubebuilder:validation:MaxLength=254
	// +kubebuilder:validation:Pattern=`^[^@\s<>"',;]+@[^@\s<>"',;]+$`
	Email string `json:"email,omitempty"`

	// disableEmail sends this user no mail, whatever the template says.
	// +optional
	DisableEmail bool `json:"disableEmail,omitempty"`

	// queueDigest asks for a notice once a day, for each day a request of this user still
	// waits for GPUs, with its place and start times.
	// +optional
	QueueDigest bool `json:"queueDigest,omitempty"`

	// webhooks receive each of this user's notices.
	// +optional
	// +kubebuilder:validation:MaxItems=4
	// +listType=atomic
	Webhooks []Webhook `json:"webhooks,omitempty"`
}

// NotificationProfileStatus is what the controller found of a profile.
type NotificationProfileStatus struct {
	// conditions: WebhookAllowed is False when a webhook targets an address notices must
	// not reach.
	// +optional
	// +listType=map
	// +listMapKey=type
	Conditions []metav1.Condition `json:"conditions,omitempty"`
}

// +kubebuilder:object:root=true
// +kubebuilder:subresource:status
// +kubebuilder:resource:scope=Cluster,shortName=np,categories=gpuwarden
// +kubebuilder:printcolumn:name="User",type=string,JSONPath=`.spec.user`
// +kubebuilder:printcolumn:name="Email",type=string,JSONPath=`.spec.email`
// +kubebuilder:printcolumn:name="Mail-Off",type=boolean,JSONPath=`.spec.disableEmail`
// +kubebuilder:printcolumn:name="Webhooks",type=string,JSONPath=`.spec.webhooks[*].format`
// +kubebuilder:printcolumn:name="Age",type=date,JSONPath=`.metadata.creationTimestamp`

// NotificationProfile says where one user's notices go: an e-mail address and chat
// webhooks. A user sets their own through the gateway (`gpuwarden notifications set`);
// an admin may write anyone's.
type NotificationProfile struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	// +required
	Spec NotificationProfileSpec `json:"spec"`
	// +optional
	Status NotificationProfileStatus `json:"status,omitempty"`
}

// +kubebuilder:object:root=true

// NotificationProfileList is a list of NotificationProfiles.
type NotificationProfileList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []NotificationProfile `json:"items"`
}

func init() {
	SchemeBuilder.Register(&NotificationProfile{}, &NotificationProfileList{})
}
