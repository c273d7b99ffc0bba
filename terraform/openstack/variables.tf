# hubfleet writes these per course into hubfleet.tfvars.json (see hubfleet/providers/openstack.py,
# terraform_variables). Credentials are never variables: they come from clouds.yaml / OS_CLOUD.

variable "cloud" {
  type        = string
  description = "Name of the cloud in clouds.yaml; empty to use OS_CLOUD or the OS_* variables."
  default     = ""
}

variable "course_name" {
  type        = string
  description = "The course's DNS-safe name; every resource is named and tagged after it."
}

variable "image_name" {
  type        = string
  description = "Base image (with cloud-init) the hosts boot from, e.g. debian-12."
}

variable "external_network" {
  type        = string
  description = "External network for the course router and the hub's floating IP."
}

variable "network_name" {
  type        = string
  description = "An existing project network to attach hosts to; empty to create one for the course."
  default     = ""
}

variable "subnet_cidr" {
  type        = string
  description = "Address range of the course's own subnet (unused with network_name)."
  default     = "10.42.0.0/24"
}

variable "dns_nameservers" {
  type        = list(string)
  description = "Resolvers of the course's subnet; the cloud's default when empty."
  default     = []
}

variable "operator_cidr" {
  type        = string
  description = "Where the operator and Ansible connect from: the only range SSH is open to."
}

variable "ssh_public_key" {
  type        = string
  description = "The course's SSH public key (OpenSSH format), installed as the course keypair."
}

variable "ssh_user" {
  type        = string
  description = "Login user the image's cloud-init creates; returned with each host."
  default     = "debian"
}

variable "hosts" {
  type = list(object({
    name        = string
    role        = string
    flavor      = string
    volume_size = number
    user_data   = string
  }))
  description = "One entry per host, the hub first: name, role (hub or worker), real flavor name, data volume size in GiB (0 for none) and cloud-init user data."

  validation {
    condition     = length(var.hosts) > 0 && var.hosts[0].role == "hub"
    error_message = "The first host must be the hub."
  }
}

variable "dns_zone" {
  type        = string
  description = "Designate zone (with the trailing dot) to put the course's record in; empty for none."
  default     = ""
}

variable "dns_record" {
  type        = string
  description = "Fully qualified name (trailing dot) of the course's A record in dns_zone; empty for none."
  default     = ""
}
